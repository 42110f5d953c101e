// The options of `tote doctor`. Every field is documented by its help text; `tote doctor --help` prints them.
import { kubeOptions } from './common.ts';
import { option, parseConfig } from './options.ts';
import type { ConfigOf } from './options.ts';

export const doctorOptions = {
  ...kubeOptions,
  namespace: option.string({
    flag: 'namespace',
    env: 'TOTE_NAMESPACE',
    default: 'tote-system',
    help: "tote's namespace: the controller's leader Lease and the agents' Leases live here.",
  }),
  leaderElectionId: option.string({
    flag: 'leader-election-id',
    env: 'TOTE_LEADER_ELECTION_ID',
    default: 'tote-controller-leader',
    help: "Name of the controller's leader-election Lease.",
  }),
  tlsCertFile: option.path({
    flag: 'tls-cert-file',
    env: 'TOTE_TLS_CERT_FILE',
    help: 'A certificate the agents accept as the controller (urn:tote:controller), to call each agent. Without the TLS files the agents are checked through their Leases only.',
  }),
  tlsKeyFile: option.path({ flag: 'tls-key-file', env: 'TOTE_TLS_KEY_FILE', help: 'Private key of --tls-cert-file.' }),
  tlsCaFile: option.path({ flag: 'tls-ca-file', env: 'TOTE_TLS_CA_FILE', help: "tote's CA bundle." }),
  timeoutMs: option.duration({
    flag: 'timeout',
    env: 'TOTE_DOCTOR_TIMEOUT',
    default: 10_000,
    minMs: 100,
    help: 'Deadline of each check that calls out (API server, agents).',
  }),
  output: option.choice(['table', 'json'] as const)({
    flag: 'output',
    env: 'TOTE_DOCTOR_OUTPUT',
    default: 'table',
    help: 'table for people, json for scripts.',
  }),
};

export type DoctorConfig = ConfigOf<typeof doctorOptions>;

export function parseDoctorConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): DoctorConfig {
  return parseConfig(doctorOptions, argv, env, {
    usage: 'tote doctor [flags]',
    description:
      'Checks that tote can salvage in this cluster: API access, CRDs, the controller, every node’s agent and containerd, policies, and workloads tote cannot help. Exits non-zero on any failure.',
    validate: (c) =>
      [c.tlsCertFile, c.tlsKeyFile, c.tlsCaFile].filter((f) => f !== undefined).length % 3 === 0
        ? []
        : ['--tls-cert-file, --tls-key-file and --tls-ca-file: give all three or none'],
  });
}
