// Supervised informer against the real kube-apiserver: list + watch of ConfigMaps, add/update/delete, recovery after the
// connection to the API server is cut (through a TCP proxy the test controls), and relisting.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import type { KubernetesObject } from '@kubernetes/client-node';
import { ensureCluster, testNamespace } from '../../support/index.ts';
import type { ClusterEnv } from '../../support/index.ts';
import { KubeClient, loadKubeConfig, resources } from '../../../src/runtime/kube.ts';
import { createInformer } from '../../../src/runtime/informer.ts';
import type { Informer } from '../../../src/runtime/informer.ts';
import { createRegistry, runtimeMetrics } from '../../../src/runtime/metrics.ts';
import { Condition, withDeadline } from './deadline.ts';

type ConfigMap = KubernetesObject & { data?: Record<string, string> };
// Every namespace has a kube-root-ca.crt ConfigMap; the informers only follow the test's own.
const labelSelector = 'tote.dev/informer-test=yes';

/** A TCP proxy to the API server whose connections the test can cut and whose listener it can close and reopen. */
class CuttableProxy {
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  port = 0;
  connections = 0;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  async listen(): Promise<void> {
    const server = createServer((client) => {
      this.connections++;
      const upstream = connect(this.#target.port, this.#target.host);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on('close', () => this.#sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /** Stops listening and resets every open connection (the watch sees ECONNRESET, then ECONNREFUSED on retry). */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const s of this.#sockets) s.resetAndDestroy();
    await closed;
  }
}

describe('informer (real API server)', () => {
  let env: ClusterEnv;
  let direct: KubeClient;
  before(async () => {
    env = await ensureCluster();
    direct = new KubeClient(loadKubeConfig(env.kubeconfig));
  });

  const cm = (name: string, namespace: string, value: string): ConfigMap => ({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace, labels: { 'tote.dev/informer-test': 'yes' } },
    data: { value },
  });

  function watchInformer(informer: Informer<ConfigMap>) {
    const changed = new Condition();
    const events: string[] = [];
    informer.addEventHandler({
      add: (o) => (events.push(`add ${o.metadata?.name}`), changed.notify()),
      update: (_, o) => (events.push(`update ${o.metadata?.name}=${o.data?.value}`), changed.notify()),
      delete: (o) => (events.push(`delete ${o.metadata?.name}`), changed.notify()),
    });
    return { changed, events };
  }

  it('lists, then sees adds, updates and deletes through the watch', async (t) => {
    const ns = await testNamespace(env, t);
    await direct.create(resources.configMaps, cm('before', ns.name, '1'));
    const informer = createInformer<ConfigMap>(direct, resources.configMaps, { namespace: ns.name, labelSelector });
    const { changed, events } = watchInformer(informer);
    t.after(() => informer.stop());
    informer.start();
    await withDeadline(informer.synced, 15_000, 'cache sync');
    assert.deepEqual(informer.keys(), [`${ns.name}/before`]);

    const created = await direct.create(resources.configMaps, cm('x', ns.name, 'a'));
    await changed.until(() => informer.get(`${ns.name}/x`)?.data?.value === 'a', 15_000, 'add of x');
    await direct.update(resources.configMaps, { ...created, data: { value: 'b' } });
    await changed.until(() => informer.get(`${ns.name}/x`)?.data?.value === 'b', 15_000, 'update of x');
    await direct.delete(resources.configMaps, 'x', ns.name);
    await changed.until(() => informer.get(`${ns.name}/x`) === undefined, 15_000, 'delete of x');
    assert.deepEqual(events, ['add before', 'add x', 'update x=b', 'delete x']);
    assert.equal(informer.status().relists, 1, 'the watch alone kept the cache current');
  });

  it('recovers after its connection to the API server is cut, and catches up on what it missed', async (t) => {
    const ns = await testNamespace(env, t);
    const kc = loadKubeConfig(env.kubeconfig);
    const server = new URL(kc.server);
    const proxy = new CuttableProxy({ host: server.hostname, port: Number(server.port) });
    await proxy.listen();
    // Same cluster, credentials and CA, reached through the proxy (the serving certificate covers 127.0.0.1).
    const viaProxy = kc.withServer(`https://127.0.0.1:${proxy.port}`);
    const metrics = runtimeMetrics(createRegistry({ defaultMetrics: false }));
    const informer = createInformer<ConfigMap>(
      new KubeClient(viaProxy, { requestTimeoutMs: 5000 }),
      resources.configMaps,
      {
        namespace: ns.name,
        labelSelector,
        backoffInitialMs: 200,
        backoffMaxMs: 1000,
        metrics,
      },
    );
    const { changed } = watchInformer(informer);
    t.after(async () => {
      await informer.stop();
      await proxy.cut();
    });
    informer.start();
    await withDeadline(informer.synced, 15_000, 'cache sync');
    await direct.create(resources.configMaps, cm('one', ns.name, '1'));
    await changed.until(() => informer.get(`${ns.name}/one`) !== undefined, 15_000, 'first object');

    await proxy.cut();
    // Changes made while the informer cannot reach the server.
    await direct.create(resources.configMaps, cm('missed', ns.name, '2'));
    await direct.delete(resources.configMaps, 'one', ns.name);
    const connectionsBefore = proxy.connections;
    await proxy.listen();

    await changed.until(
      () => informer.get(`${ns.name}/missed`) !== undefined && informer.get(`${ns.name}/one`) === undefined,
      20_000,
      'the changes made during the outage',
    );
    assert.ok(proxy.connections > connectionsBefore, 'reconnected');
    assert.ok(
      informer.status().watchRestarts >= 1,
      `watch restarted after the error (${JSON.stringify(informer.status())})`,
    );
    const restarts = (await metrics.informerRestarts.get()).values[0]?.value ?? 0;
    assert.ok(restarts >= 1, 'restart counted in tote_informer_watch_restarts_total');
  });

  it('relists on request and stays consistent', async (t) => {
    const ns = await testNamespace(env, t);
    const informer = createInformer<ConfigMap>(direct, resources.configMaps, { namespace: ns.name, labelSelector });
    const { changed, events } = watchInformer(informer);
    t.after(() => informer.stop());
    informer.start();
    await withDeadline(informer.synced, 15_000, 'cache sync');
    await direct.create(resources.configMaps, cm('a', ns.name, '1'));
    await changed.until(() => informer.get(`${ns.name}/a`) !== undefined, 15_000, 'a');
    informer.requestRelist();
    // A relist re-announces every object as an update (resync), which is how it re-enqueues the world.
    await changed.until(() => events.includes('update a=1'), 15_000, 'resync update of a');
    assert.equal(informer.status().relists, 2);
    assert.deepEqual(informer.keys(), [`${ns.name}/a`]);
  });
});
