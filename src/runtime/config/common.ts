// Option groups shared by `tote controller` and `tote agent`: logging, Kubernetes access, probes/metrics, TLS.
// Spread them into a command's table: `{ ...loggingOptions, ...tlsOptions, myOption: option.string({...}) }`.

import { LOG_FORMATS, LOG_LEVELS } from '../logging.ts';
import { option } from './options.ts';

export const loggingOptions = {
  logLevel: option.choice(LOG_LEVELS)({
    flag: 'log-level',
    env: 'TOTE_LOG_LEVEL',
    default: 'info',
    help: 'Least severe level written to the log.',
  }),
  logFormat: option.choice(LOG_FORMATS)({
    flag: 'log-format',
    env: 'TOTE_LOG_FORMAT',
    default: 'json',
    help: 'json: one JSON object per line (for log collectors); text: compact lines for humans.',
  }),
};

export const kubeOptions = {
  kubeconfig: option.path({
    flag: 'kubeconfig',
    env: 'TOTE_KUBECONFIG',
    help: 'Kubeconfig file. Unset: $KUBECONFIG, then ~/.kube/config, then the in-cluster service account.',
  }),
};

/** The deadline of each API call of the commands people run (status, why, salvage, migrate). */
export const apiTimeoutOptions = {
  timeoutMs: option.duration({
    flag: 'timeout',
    env: 'TOTE_TIMEOUT',
    default: 10_000,
    minMs: 100,
    help: 'Deadline of each call to the API server.',
  }),
};

export const serveOptions = (defaults: { metrics: string; health: string }) => ({
  metricsBindAddress: option.bindAddress({
    flag: 'metrics-bind-address',
    env: 'TOTE_METRICS_BIND_ADDRESS',
    default: option.bindAddress({ flag: 'x', help: '' }).parse(defaults.metrics),
    help: 'Address serving /metrics (Prometheus). 0 disables it (the metrics then live on the probe address).',
  }),
  healthProbeBindAddress: option.bindAddress({
    flag: 'health-probe-bind-address',
    env: 'TOTE_HEALTH_PROBE_BIND_ADDRESS',
    default: option.bindAddress({ flag: 'x', help: '' }).parse(defaults.health),
    help: 'Address serving /healthz and /readyz. 0 disables it.',
  }),
});

export const tlsOptions = {
  tlsCertFile: option.path({
    flag: 'tls-cert-file',
    env: 'TOTE_TLS_CERT_FILE',
    help: 'PEM certificate this process presents on mTLS connections (agent API).',
  }),
  tlsKeyFile: option.path({
    flag: 'tls-key-file',
    env: 'TOTE_TLS_KEY_FILE',
    help: 'PEM private key of --tls-cert-file.',
  }),
  tlsCaFile: option.path({
    flag: 'tls-ca-file',
    env: 'TOTE_TLS_CA_FILE',
    help: "PEM CA bundle that peers' certificates must chain to.",
  }),
};

/** Cross-checks for tlsOptions: cert and key come together; a CA without a cert makes no sense for mTLS. */
export function validateTls(c: {
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
  tlsCaFile?: string | undefined;
}): string[] {
  const problems: string[] = [];
  if ((c.tlsCertFile === undefined) !== (c.tlsKeyFile === undefined))
    problems.push('--tls-cert-file and --tls-key-file: give both or neither');
  if (c.tlsCaFile !== undefined && c.tlsCertFile === undefined)
    problems.push('--tls-ca-file: needs --tls-cert-file and --tls-key-file (mTLS)');
  return problems;
}
