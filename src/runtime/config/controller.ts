// The options of `tote controller`. Every field is documented by its help text; `tote controller --help` prints them.

import { kubeOptions, loggingOptions, serveOptions, tlsOptions, validateTls } from './common.ts';
import { option, parseConfig } from './options.ts';
import type { ConfigOf, ParseOptions } from './options.ts';

export const controllerOptions = {
  ...kubeOptions,
  namespaces: option.list({
    flag: 'namespaces',
    env: 'TOTE_NAMESPACES',
    default: [],
    help: 'Namespaces whose pods are watched (comma-separated). Empty: all namespaces.',
  }),
  ...serveOptions({ metrics: ':8080', health: ':8081' }),
  leaderElect: option.boolean({
    flag: 'leader-elect',
    env: 'TOTE_LEADER_ELECT',
    default: false,
    help: 'Elect a leader through a coordination.k8s.io Lease so only one replica acts. Enable when running more than one.',
  }),
  leaderElectionNamespace: option.string({
    flag: 'leader-election-namespace',
    env: 'TOTE_LEADER_ELECTION_NAMESPACE',
    default: 'tote-system',
    help: 'Namespace of the leader-election Lease (set it to the pod namespace through the downward API).',
  }),
  leaderElectionId: option.string({
    flag: 'leader-election-id',
    env: 'TOTE_LEADER_ELECTION_ID',
    default: 'tote-controller-leader',
    help: 'Name of the leader-election Lease.',
  }),
  leaseDurationMs: option.duration({
    flag: 'leader-elect-lease-duration',
    env: 'TOTE_LEADER_ELECT_LEASE_DURATION',
    default: 15_000,
    minMs: 1000,
    help: 'How long a standby waits after the last renewal before taking the lease over.',
  }),
  renewDeadlineMs: option.duration({
    flag: 'leader-elect-renew-deadline',
    env: 'TOTE_LEADER_ELECT_RENEW_DEADLINE',
    default: 10_000,
    help: 'How long the leader keeps retrying a failed renewal before it gives leadership up.',
  }),
  retryPeriodMs: option.duration({
    flag: 'leader-elect-retry-period',
    env: 'TOTE_LEADER_ELECT_RETRY_PERIOD',
    default: 2_000,
    minMs: 1,
    help: 'Interval between acquire and renew attempts.',
  }),
  podName: option.string({
    flag: 'pod-name',
    env: 'TOTE_POD_NAME',
    help: "This pod's name (downward API); prefixes the leader-election identity. Default: the host name.",
  }),
  podNamespace: option.string({
    flag: 'pod-namespace',
    env: 'TOTE_POD_NAMESPACE',
    help: "This pod's namespace (downward API), where Events about the controller itself go.",
  }),
  maxConcurrentReconciles: option.integer({
    flag: 'max-concurrent-reconciles',
    env: 'TOTE_MAX_CONCURRENT_RECONCILES',
    default: 4,
    min: 1,
    max: 256,
    help: 'Workers per controller (one key never runs on two workers at once).',
  }),
  syncPeriodMs: option.duration({
    flag: 'sync-period',
    env: 'TOTE_SYNC_PERIOD',
    default: 10 * 60_000,
    minMs: 1000,
    help: 'Mean interval of the full relists that re-enqueue every object (jittered by up to 10%).',
  }),
  protectionSurveyPeriodMs: option.duration({
    flag: 'protection-survey-period',
    env: 'TOTE_PROTECTION_SURVEY_PERIOD',
    default: 30_000,
    minMs: 1000,
    help: 'How often a policy with spec.protection counts the copies of the images its pods run (a node being cordoned, tainted or deleted counts them at once).',
  }),
  requeueBaseDelayMs: option.duration({
    flag: 'requeue-base-delay',
    env: 'TOTE_REQUEUE_BASE_DELAY',
    default: 5,
    minMs: 1,
    help: 'First retry delay of a failed key; doubles per failure.',
  }),
  requeueMaxDelayMs: option.duration({
    flag: 'requeue-max-delay',
    env: 'TOTE_REQUEUE_MAX_DELAY',
    default: 1_000_000,
    minMs: 1,
    help: 'Cap of the per-key retry delay.',
  }),
  requeueQps: option.number({
    flag: 'requeue-qps',
    env: 'TOTE_REQUEUE_QPS',
    default: 10,
    min: 0.001,
    help: 'Overall retries per second across all keys (token bucket).',
  }),
  requeueBurst: option.integer({
    flag: 'requeue-burst',
    env: 'TOTE_REQUEUE_BURST',
    default: 100,
    min: 1,
    help: 'Burst of the overall retry token bucket.',
  }),
  gracefulShutdownTimeoutMs: option.duration({
    flag: 'graceful-shutdown-timeout',
    env: 'TOTE_GRACEFUL_SHUTDOWN_TIMEOUT',
    default: 30_000,
    help: 'How long shutdown waits for in-flight reconciles before exiting anyway.',
  }),
  agentNamespace: option.string({
    flag: 'agent-namespace',
    env: 'TOTE_AGENT_NAMESPACE',
    default: 'tote-system',
    help: "Namespace of the Leases through which agents announce their addresses (the agent DaemonSet's namespace).",
  }),
  agentServiceAccount: option.string({
    flag: 'agent-service-account',
    env: 'TOTE_AGENT_SERVICE_ACCOUNT',
    default: 'tote-agent',
    help: 'ServiceAccount of the agent pods (in --agent-namespace): only its certificate requests are signed.',
  }),
  agentSignerCertFile: option.path({
    flag: 'agent-signer-cert-file',
    env: 'TOTE_AGENT_SIGNER_CERT_FILE',
    help:
      'PEM certificate of the CA that signs agent certificates (Secret tote-ca, tls.crt). With --agent-signer-key-file ' +
      'the controller is the signer tote.dev/agent: it approves and signs the CertificateSigningRequest of an agent ' +
      'for its own node only. Unset: agents bring their own certificates.',
  }),
  agentSignerKeyFile: option.path({
    flag: 'agent-signer-key-file',
    env: 'TOTE_AGENT_SIGNER_KEY_FILE',
    help: 'PEM private key of --agent-signer-cert-file.',
  }),
  agentCertificateMaxLifetimeMs: option.duration({
    flag: 'agent-certificate-max-lifetime',
    env: 'TOTE_AGENT_CERTIFICATE_MAX_LIFETIME',
    default: 24 * 3600_000,
    minMs: 600_000,
    help: 'Longest validity of an agent certificate; a request asking for less gets less (at least 10 minutes).',
  }),
  agentRpcTimeoutMs: option.duration({
    flag: 'agent-rpc-timeout',
    env: 'TOTE_AGENT_RPC_TIMEOUT',
    default: 30_000,
    minMs: 1,
    help: 'Deadline of unary agent RPCs (streaming transfers have their own progress deadline).',
  }),
  tokenSigningKeyFile: option.path({
    flag: 'token-signing-key-file',
    env: 'TOTE_TOKEN_SIGNING_KEY_FILE',
    help: 'PEM Ed25519 private key that signs transfer tokens (agents hold the public key).',
  }),
  ttlSchedule: option.string({
    flag: 'ttl-schedule',
    env: 'TOTE_TTL_SCHEDULE',
    default: '*/5 * * * *',
    help: 'Cron schedule of the cleaner that deletes finished SalvageRecords older than their policy’s recordTTL.',
  }),
  maxTransferAttempts: option.integer({
    flag: 'max-transfer-attempts',
    env: 'TOTE_MAX_TRANSFER_ATTEMPTS',
    default: 5,
    min: 1,
    max: 100,
    help: 'Transfer attempts per record (rotating through the nodes holding the image) before it is Failed.',
  }),
  transferRetryBaseMs: option.duration({
    flag: 'transfer-retry-base-delay',
    env: 'TOTE_TRANSFER_RETRY_BASE_DELAY',
    default: 10_000,
    minMs: 1,
    help: 'Wait before the second transfer attempt; doubles per attempt up to --transfer-retry-max-delay.',
  }),
  transferRetryMaxMs: option.duration({
    flag: 'transfer-retry-max-delay',
    env: 'TOTE_TRANSFER_RETRY_MAX_DELAY',
    default: 300_000,
    minMs: 1,
    help: 'Longest wait between transfer attempts.',
  }),
  transfersPerSource: option.integer({
    flag: 'transfers-per-source',
    env: 'TOTE_TRANSFERS_PER_SOURCE',
    default: 1,
    min: 1,
    max: 64,
    help:
      'Transfers of one image one node serves at once. When many nodes need an image, the others wait for a free ' +
      'holder and every node that finished serves the next: the image spreads as a tree instead of every node ' +
      'reading the first source.',
  }),
  ...tlsOptions,
  ...loggingOptions,
};

export type ControllerConfig = ConfigOf<typeof controllerOptions>;

const controllerParse: ParseOptions<typeof controllerOptions> = {
  usage: 'tote controller [flags]',
  description: 'Runs the tote controller: detects pods whose images are lost and salvages them from other nodes.',
  validate: (c) => {
    const problems = validateTls(c);
    if ((c.agentSignerCertFile === undefined) !== (c.agentSignerKeyFile === undefined))
      problems.push('--agent-signer-cert-file and --agent-signer-key-file: give both or neither');
    if (c.leaderElect && c.renewDeadlineMs >= c.leaseDurationMs)
      problems.push('--leader-elect-renew-deadline: must be shorter than --leader-elect-lease-duration');
    if (c.leaderElect && c.retryPeriodMs >= c.renewDeadlineMs)
      problems.push('--leader-elect-retry-period: must be shorter than --leader-elect-renew-deadline');
    if (c.requeueBaseDelayMs > c.requeueMaxDelayMs)
      problems.push('--requeue-base-delay: must not exceed --requeue-max-delay');
    return problems;
  },
};

/** Parses `tote controller`'s flags and environment. Throws ConfigError or HelpRequested (see options.ts). */
export function parseControllerConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): ControllerConfig {
  return parseConfig(controllerOptions, argv, env, controllerParse);
}
