// The options of `tote agent`. Every field is documented by its help text; `tote agent --help` prints them.

import { kubeOptions, loggingOptions, serveOptions, tlsOptions } from './common.ts';
import { option, parseConfig } from './options.ts';
import type { ConfigOf } from './options.ts';

/** Largest import plan an agent accepts when nobody asks for less: 2 GiB. */
export const defaultMaxImageBytes = 2 * 1024 ** 3;

export const agentOptions = {
  nodeName: option.string({
    flag: 'node-name',
    env: 'TOTE_NODE_NAME',
    required: true,
    help: 'Name of the Kubernetes node this agent serves (downward API spec.nodeName).',
  }),
  listenAddress: option.bindAddress({
    flag: 'listen-address',
    env: 'TOTE_LISTEN_ADDRESS',
    default: option.bindAddress({ flag: 'x', help: '' }).parse(':9443'),
    help: "Address of the agent's gRPC server (mTLS when the TLS files are given).",
  }),
  containerdAddress: option.path({
    flag: 'containerd-address',
    env: 'TOTE_CONTAINERD_ADDRESS',
    default: '/run/containerd/containerd.sock',
    help: "containerd's gRPC socket.",
  }),
  containerdNamespace: option.string({
    flag: 'containerd-namespace',
    env: 'TOTE_CONTAINERD_NAMESPACE',
    default: 'k8s.io',
    help: "containerd namespace holding the kubelet's images.",
  }),
  contentDir: option.string({
    flag: 'content-dir',
    env: 'TOTE_CONTENT_DIR',
    default: '/var/lib/containerd/io.containerd.content.v1.content',
    help:
      "containerd's content store directory, mounted from the host: blobs are then served from their files and " +
      'imported by placing verified files that containerd adopts, instead of sending every byte through its API. ' +
      'Empty, missing or not adopted by containerd: the content API is used.',
  }),
  advertiseAddress: option.string({
    flag: 'advertise-address',
    env: 'TOTE_ADVERTISE_ADDRESS',
    help: 'host:port the controller and peer agents dial (in a cluster: $(POD_IP):9443). Default: the listen address.',
  }),
  leaseNamespace: option.string({
    flag: 'lease-namespace',
    env: 'TOTE_LEASE_NAMESPACE',
    default: 'tote-system',
    help: 'Namespace of the Lease through which the agent announces its address to the controller.',
  }),
  tokenPublicKeyFile: option.path({
    flag: 'token-public-key-file',
    env: 'TOTE_TOKEN_PUBLIC_KEY_FILE',
    help: "PEM Ed25519 public key of the controller's transfer-token signing key.",
  }),
  maxImageBytes: option.integer({
    flag: 'max-image-bytes',
    env: 'TOTE_MAX_IMAGE_BYTES',
    default: defaultMaxImageBytes,
    min: 1,
    help: 'Largest import plan accepted when the controller asks for no other limit.',
  }),
  certificateLifetimeMs: option.duration({
    flag: 'certificate-lifetime',
    env: 'TOTE_CERTIFICATE_LIFETIME',
    default: 24 * 3600_000,
    minMs: 600_000,
    help:
      'Validity asked for when the agent requests its certificate (no --tls-cert-file): renewed after two thirds of ' +
      'it, without a restart. The signer may grant less.',
  }),
  ...kubeOptions,
  ...serveOptions({ metrics: ':9090', health: ':9091' }),
  ...tlsOptions,
  ...loggingOptions,
};

export type AgentConfig = ConfigOf<typeof agentOptions>;

/** Parses `tote agent`'s flags and environment. Throws ConfigError or HelpRequested (see options.ts). */
export function parseAgentConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): AgentConfig {
  return parseConfig(agentOptions, argv, env, {
    usage: 'tote agent [flags]',
    description: 'Runs the tote agent beside containerd on one node: lists, transfers, imports and pushes images.',
    validate: validateAgentTls,
  });
}

/**
 * The agent's own certificate and key come as files (both) or, when neither is given, from a CertificateSigningRequest
 * the controller signs (src/agent/node-certificate.ts).
 */
function validateAgentTls(c: AgentConfig): string[] {
  return (c.tlsCertFile === undefined) !== (c.tlsKeyFile === undefined)
    ? ['--tls-cert-file and --tls-key-file: give both, or neither to request a certificate from the controller']
    : [];
}
