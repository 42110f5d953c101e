// Entry point of the node simulator (started by hack/cluster/up.sh as one background process for all nodes):
//   node test/support/node-simulator/main.ts --kubeconfig=FILE --node=NAME=SOCKET... [--pull-backoff-initial=10s]
//     [--pull-backoff-max=300s] [--resync=10s] [--node-status=10s] [--lease-renew=10s] [--kubelet-version=v1.36.3]
// Logs JSON lines to stderr. SIGTERM/SIGINT stop it cleanly.
import { parseArgs } from 'node:util';
import { parseDuration } from './duration.ts';
import { NodeSimulator } from './simulator.ts';

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    node: { type: 'string', multiple: true },
    'pull-backoff-initial': { type: 'string', default: '10s' },
    'pull-backoff-max': { type: 'string', default: '300s' },
    resync: { type: 'string', default: '10s' },
    'node-status': { type: 'string', default: '10s' },
    'lease-renew': { type: 'string', default: '10s' },
    'kubelet-version': { type: 'string', default: 'v1.36.3' },
  },
});

const log = (msg: string, fields: Record<string, unknown> = {}) =>
  process.stderr.write(JSON.stringify({ time: new Date().toISOString(), msg, ...fields }) + '\n');

if (!values.kubeconfig || !values.node?.length) {
  log('usage: main.ts --kubeconfig=FILE --node=NAME=SOCKET [--node=…]');
  process.exit(2);
}

const simulator = new NodeSimulator({
  kubeconfig: values.kubeconfig,
  nodes: values.node.map((spec) => {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new Error(`--node wants NAME=SOCKET, got ${spec}`);
    return { name: spec.slice(0, eq), socket: spec.slice(eq + 1) };
  }),
  pullBackoffInitialMs: parseDuration(values['pull-backoff-initial']),
  pullBackoffMaxMs: parseDuration(values['pull-backoff-max']),
  resyncMs: parseDuration(values.resync),
  nodeStatusMs: parseDuration(values['node-status']),
  leaseRenewMs: parseDuration(values['lease-renew']),
  kubeletVersion: values['kubelet-version'],
  log,
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    log(`received ${signal}; stopping`);
    void simulator.stop().finally(() => process.exit(0));
  });
}

await simulator.start();
