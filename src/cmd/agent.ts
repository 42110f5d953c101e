// `tote agent`: serve this node's containerd to the controller and to peer agents over mTLS, and announce the address
// through the node's agent Lease.
import { readFileSync } from 'node:fs';
import { errorMessage } from '../api/index.ts';
import type { Registry } from 'prom-client';
import { agentSignerName, RenewableTls, watchedTlsFiles } from '../agentapi/index.ts';
import { startAgentServer } from '../agent/index.ts';
import { NodeCertificate } from '../agent/node-certificate.ts';
import { AgentRegistration } from '../agent/registration.ts';
import { connectContainerd } from '../containerd/index.ts';
import { parseAgentConfig } from '../runtime/config/index.ts';
import type { AgentConfig } from '../runtime/config/index.ts';
import { systemClock } from '../runtime/clock.ts';
import { KubeClient, loadKubeConfig } from '../runtime/kube.ts';
import { createRegistry } from '../runtime/metrics.ts';
import { startHealthServer } from '../runtime/health-server.ts';
import type { HealthServer } from '../runtime/health-server.ts';
import type { Logger } from '../runtime/logging.ts';
import { commandLogger, parseOrExplain, terminationSignal } from './run.ts';

export async function runAgent(argv: string[]): Promise<number> {
  const parsed = parseOrExplain(parseAgentConfig, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const { config } = parsed;
  const log = commandLogger(config, 'agent').child({ node: config.nodeName });
  const stopping = new AbortController();
  const signal = terminationSignal().then((name) => {
    stopping.abort(new Error(`stopped by ${name}`));
    return name;
  });
  let health: HealthServer | undefined;
  let metrics: HealthServer | undefined;
  try {
    if (!config.tokenPublicKeyFile)
      throw new Error('--token-public-key-file is required: peers must present signed tokens');
    const registry = createRegistry();
    const kube = new KubeClient(loadKubeConfig(config.kubeconfig), { fieldManager: 'tote-agent' });
    const containerd = connectContainerd({ socket: config.containerdAddress, namespace: config.containerdNamespace });
    const identityState: { tls?: RenewableTls } = {};
    // Probes answer while the certificate is requested: the kubelet must not restart an agent waiting for its signer.
    health = config.healthProbeBindAddress
      ? await startHealthServer({
          address: config.healthProbeBindAddress,
          readiness: {
            containerd: async () => ((await containerd.version()) ? true : 'containerd did not answer'),
            certificate: () => identityState.tls !== undefined || 'waiting for a certificate from the controller',
          },
          // Metrics live on the probe address only when they have no address of their own.
          ...(config.metricsBindAddress ? {} : { registry }),
          logger: log,
        })
      : undefined;
    metrics = config.metricsBindAddress
      ? await startHealthServer({ address: config.metricsBindAddress, registry, logger: log })
      : undefined;
    const identity = await agentIdentity(config, { kube, log, registry, signal: stopping.signal });
    identityState.tls = identity.tls;
    const listen = config.listenAddress ?? { host: '', port: 9443 };
    const server = await startAgentServer({
      nodeName: config.nodeName,
      containerd,
      tls: identity.tls,
      tokenPublicKey: readFileSync(config.tokenPublicKeyFile, 'utf8'),
      listen: `${listen.host || '0.0.0.0'}:${listen.port}`,
      registry,
      maxImageBytes: config.maxImageBytes,
      ...(config.contentDir ? { contentDir: config.contentDir } : {}),
      onContentDirDisabled: (reason) =>
        log.warn('content directory no longer used: blobs go through containerd’s content API', { reason }),
    });
    const advertised = config.advertiseAddress ?? server.address;
    const registration = new AgentRegistration({
      kube,
      namespace: config.leaseNamespace,
      node: config.nodeName,
      address: advertised,
      clock: systemClock,
      log,
    });
    await registration.start();
    log.info('agent started', {
      address: server.address,
      advertised,
      identity: identity.source,
      contentDir: server.contentDir ?? 'not mounted: blobs go through the content API',
    });
    log.info('stopping', { signal: await signal });
    identity.stop();
    await registration.stop();
    await server.stop();
    containerd.close();
    return 0;
  } catch (err) {
    if (stopping.signal.aborted) return 0;
    log.error('agent failed', { error: errorMessage(err) });
    return 1;
  } finally {
    await health?.close();
    await metrics?.close();
  }
}

/**
 * The agent's mTLS identity: certificate files when given (re-read every minute, so a renewed Secret takes effect),
 * else a certificate from tote's signer through a CertificateSigningRequest, renewed before it expires.
 */
async function agentIdentity(
  config: AgentConfig,
  parts: { kube: KubeClient; log: Logger; registry: Registry; signal: AbortSignal },
): Promise<{ tls: RenewableTls; source: string; stop(): void }> {
  if (!config.tlsCaFile) throw new Error("--tls-ca-file is required: the CA that peers' certificates chain to");
  if (config.tlsCertFile && config.tlsKeyFile) {
    const files = { ca: config.tlsCaFile, cert: config.tlsCertFile, key: config.tlsKeyFile };
    return { ...watchedTlsFiles(files, parts.log), source: `files ${config.tlsCertFile}` };
  }
  const ca = readFileSync(config.tlsCaFile);
  const certificate = new NodeCertificate({
    kube: parts.kube,
    node: config.nodeName,
    ca,
    lifetimeMs: config.certificateLifetimeMs,
    clock: systemClock,
    log: parts.log,
    registry: parts.registry,
  });
  const tls = new RenewableTls(await certificate.obtain(parts.signal));
  const renewal = certificate.keepRenewed(tls);
  return { tls, source: `signer ${agentSignerName}`, stop: () => renewal.stop() };
}
