// `tote agent`: serve this node's containerd to the controller and to peer agents over mTLS, and announce the address
// through the node's agent Lease.
import { readFileSync } from 'node:fs';
import { errorMessage } from '../api/index.ts';
import { startAgentServer } from '../agent/index.ts';
import { AgentRegistration } from '../agent/registration.ts';
import { connectContainerd } from '../containerd/index.ts';
import { parseAgentConfig } from '../runtime/config/index.ts';
import { systemClock } from '../runtime/clock.ts';
import { KubeClient, loadKubeConfig } from '../runtime/kube.ts';
import { createRegistry } from '../runtime/metrics.ts';
import { startHealthServer } from '../runtime/health-server.ts';
import { readTlsMaterial } from '../controller/manager.ts';
import { commandLogger, parseOrExplain, terminationSignal } from './run.ts';

export async function runAgent(argv: string[]): Promise<number> {
  const parsed = parseOrExplain(parseAgentConfig, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const { config } = parsed;
  const log = commandLogger(config, 'agent').child({ node: config.nodeName });
  try {
    if (!config.tokenPublicKeyFile)
      throw new Error('--token-public-key-file is required: peers must present signed tokens');
    const registry = createRegistry();
    const containerd = connectContainerd({ socket: config.containerdAddress, namespace: config.containerdNamespace });
    const listen = config.listenAddress ?? { host: '', port: 9443 };
    const server = await startAgentServer({
      nodeName: config.nodeName,
      containerd,
      tls: readTlsMaterial(config),
      tokenPublicKey: readFileSync(config.tokenPublicKeyFile, 'utf8'),
      listen: `${listen.host || '0.0.0.0'}:${listen.port}`,
      registry,
      maxImageBytes: config.maxImageBytes,
      ...(config.contentDir ? { contentDir: config.contentDir } : {}),
      onContentDirDisabled: (reason) =>
        log.warn('content directory no longer used: blobs go through containerd’s content API', { reason }),
    });
    const health = config.healthProbeBindAddress
      ? await startHealthServer({
          address: config.healthProbeBindAddress,
          readiness: { containerd: async () => ((await containerd.version()) ? true : 'containerd did not answer') },
          // Metrics live on the probe address only when they have no address of their own.
          ...(config.metricsBindAddress ? {} : { registry }),
          logger: log,
        })
      : undefined;
    const metrics = config.metricsBindAddress
      ? await startHealthServer({ address: config.metricsBindAddress, registry, logger: log })
      : undefined;
    const advertised = config.advertiseAddress ?? server.address;
    const registration = new AgentRegistration({
      kube: new KubeClient(loadKubeConfig(config.kubeconfig), { fieldManager: 'tote-agent' }),
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
      contentDir: server.contentDir ?? 'not mounted: blobs go through the content API',
    });
    const signal = await terminationSignal();
    log.info('stopping', { signal });
    await registration.stop();
    await server.stop();
    await health?.close();
    await metrics?.close();
    containerd.close();
    return 0;
  } catch (err) {
    log.error('agent failed', { error: errorMessage(err) });
    return 1;
  }
}
