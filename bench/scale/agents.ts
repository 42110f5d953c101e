// The agents of the scale benchmark's simulated nodes: one process hosting one real agent server (src/agent/server.ts,
// tote.agent.v1 over mTLS with that node's own certificate) per kwok node, each over its own in-memory containerd
// (memory-containerd.ts). One server per node because the controller checks that the server's certificate names
// exactly the node it dials (src/agentapi/tls.ts) and a certificate naming several nodes is refused
// (src/agentapi/identity.ts). Each agent announces itself with its Lease, as the real agent does (src/api/agent-lease.ts).
//
// Usage: node bench/scale/agents.ts CONFIG.json (AgentsConfig below: nodes, certificates, images and their holders). Prints "ready <n>" on
//   stdout once every server listens and every Lease is written (src/agent/registration.ts, renewed every minute);
//   SIGTERM deletes the Leases and stops.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { RenewableTls } from '../../src/agentapi/index.ts';
import { startAgentServer } from '../../src/agent/index.ts';
import { AgentRegistration } from '../../src/agent/registration.ts';
import type { AgentServer } from '../../src/agent/index.ts';
import { criManagedLabel, criManagedValue } from '../../src/containerd/index.ts';
import { systemClock } from '../../src/runtime/clock.ts';
import { KubeClient, loadKubeConfig } from '../../src/runtime/kube.ts';
import { createLogger } from '../../src/runtime/logging.ts';
import { MemoryContainerd } from './memory-containerd.ts';

export interface AgentsConfig {
  kubeconfig: string;
  /** Directory with agents/<node>.crt and .key (hack/certs/make-certs.sh --out). */
  certs: string;
  caFile: string;
  tokenPublicKeyFile: string;
  namespace: string;
  nodes: string[];
  images: {
    name: string;
    target: { mediaType: string; digest: string; size: number };
    blobs: { data: string; labels?: Record<string, string> }[];
    holders: string[];
  }[];
}

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as AgentsConfig;
const log = (msg: string) => process.stderr.write(`bench-scale agents: ${msg}\n`);
const ca = readFileSync(config.caFile);
const tokenPublicKey = readFileSync(config.tokenPublicKeyFile, 'utf8');

const servers = new Map<string, AgentServer>();
const stores = new Map<string, MemoryContainerd>();
for (const node of config.nodes) {
  const containerd = new MemoryContainerd();
  stores.set(node, containerd);
  servers.set(
    node,
    await startAgentServer({
      nodeName: node,
      containerd,
      tls: new RenewableTls({
        ca,
        cert: readFileSync(join(config.certs, 'agents', `${node}.crt`)),
        key: readFileSync(join(config.certs, 'agents', `${node}.key`)),
      }),
      tokenPublicKey,
      listen: '127.0.0.1:0',
      registry: new Registry(),
      platform: { os: 'linux', architecture: 'amd64' },
    }),
  );
}
log(`${servers.size} agent servers listening`);

for (const image of config.images) {
  for (const holder of image.holders) {
    const c = stores.get(holder);
    if (!c) throw new Error(`image holder ${holder} is not one of the nodes`);
    for (const b of image.blobs) c.content.put(Buffer.from(b.data, 'base64'), b.labels ?? {});
    await c.images.create({ name: image.name, target: image.target, labels: { [criManagedLabel]: criManagedValue } });
    await c.images.create({
      name: `${image.name.replace(/:[^:/]+$/, '')}@${image.target.digest}`,
      target: image.target,
      labels: { [criManagedLabel]: criManagedValue },
    });
  }
}

const kube = new KubeClient(loadKubeConfig(config.kubeconfig), { fieldManager: 'tote-bench-agents' });
const quiet = createLogger({ level: 'warn' });
const registrations = [...servers].map(
  ([node, server]) =>
    new AgentRegistration({
      kube,
      namespace: config.namespace,
      node,
      address: server.address,
      clock: systemClock,
      log: quiet,
      // Longer than the real agent's 10 s / 40 s so 500 renewals do not dominate the API server's load.
      renewIntervalMs: 60_000,
      leaseDurationSeconds: 300,
    }),
);
for (let i = 0; i < registrations.length; i += 25)
  await Promise.all(registrations.slice(i, i + 25).map((r) => r.start()));
console.log(`ready ${servers.size}`);

process.on('SIGTERM', () => {
  void (async () => {
    for (let i = 0; i < registrations.length; i += 25)
      await Promise.all(registrations.slice(i, i + 25).map((r) => r.stop().catch(() => undefined)));
    await Promise.all([...servers.values()].map((s) => s.stop()));
    process.exit(0);
  })();
});
