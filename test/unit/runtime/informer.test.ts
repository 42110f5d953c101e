import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { KubernetesObject } from '@kubernetes/client-node';
import { ManualClock, settle } from '../../../src/runtime/clock.ts';
import { Informer } from '../../../src/runtime/informer.ts';
import type { ListPage, ListerWatcher, WatchEventType } from '../../../src/runtime/informer.ts';
import { trimPod, trimWorkload } from '../../../src/runtime/trim.ts';

type Obj = KubernetesObject & { spec?: { node?: string } };
const obj = (name: string, rv: string, node = 'n1'): Obj => ({
  metadata: { name, namespace: 'ns', resourceVersion: rv, managedFields: [{ manager: 'x' }] },
  spec: { node },
});

/** A scripted API server: list returns `objects`; each watch is recorded so the test can push events or end it. */
class FakeServer implements ListerWatcher<Obj> {
  objects: Obj[] = [];
  rv = '10';
  lists = 0;
  listFailures: unknown[] = [];
  watches: {
    rv: string;
    onEvent: (t: WatchEventType, o: unknown) => void;
    onDone: (e?: unknown) => void;
    aborted: boolean;
  }[] = [];

  async list(_: { limit?: number; continue?: string }): Promise<ListPage<Obj>> {
    this.lists++;
    const failure = this.listFailures.shift();
    if (failure) throw failure;
    return { items: structuredClone(this.objects), metadata: { resourceVersion: this.rv } };
  }

  async watch(rv: string, onEvent: (t: WatchEventType, o: unknown) => void, onDone: (e?: unknown) => void) {
    const w = { rv, onEvent, onDone, aborted: false };
    this.watches.push(w);
    return () => {
      w.aborted = true;
    };
  }

  get current() {
    const w = this.watches.at(-1);
    assert.ok(w && !w.aborted, 'a live watch');
    return w;
  }
}

function setup(options: { resyncPeriodMs?: number } = {}) {
  const clock = new ManualClock();
  const server = new FakeServer();
  const events: string[] = [];
  const informer = new Informer<Obj>({
    name: 'things',
    listerWatcher: server,
    clock,
    random: () => 0,
    resyncPeriodMs: options.resyncPeriodMs ?? 0,
    backoffInitialMs: 100,
    backoffMaxMs: 1000,
    indexers: { node: (o) => (o.spec?.node ? [o.spec.node] : []) },
  });
  informer.addEventHandler({
    add: (o) => events.push(`add ${o.metadata?.name}`),
    update: (_, o) => events.push(`update ${o.metadata?.name}@${o.metadata?.resourceVersion}`),
    delete: (o) => events.push(`delete ${o.metadata?.name}`),
  });
  return { clock, server, events, informer };
}

describe('Informer', () => {
  it('lists, syncs, then applies watch events from the list resourceVersion', async () => {
    const { server, events, informer } = setup();
    server.objects = [obj('a', '5'), obj('b', '6', 'n2')];
    informer.start();
    await informer.synced;
    await settle();
    assert.ok(informer.hasSynced());
    assert.deepEqual(events, ['add a', 'add b']);
    assert.equal(server.current.rv, '10');
    assert.equal(informer.get('ns/a')?.metadata?.managedFields, undefined, 'managedFields dropped by default');
    server.current.onEvent('MODIFIED', obj('a', '11', 'n2'));
    server.current.onEvent('ADDED', obj('c', '12'));
    server.current.onEvent('DELETED', obj('b', '13'));
    assert.deepEqual(events.slice(2), ['update a@11', 'add c', 'delete b']);
    assert.deepEqual(informer.keys().sort(), ['ns/a', 'ns/c']);
    assert.deepEqual(
      informer.byIndex('node', 'n2').map((o) => o.metadata?.name),
      ['a'],
    );
    assert.deepEqual(
      informer.byIndex('node', 'n1').map((o) => o.metadata?.name),
      ['c'],
    );
    assert.equal(informer.resourceVersion, '13');
    await informer.stop();
  });

  it('resumes from the last resourceVersion when a watch closes normally', async () => {
    const { server, informer } = setup();
    informer.start();
    await informer.synced;
    await settle();
    server.current.onEvent('BOOKMARK', { metadata: { resourceVersion: '42' } });
    server.current.onDone();
    await settle();
    assert.equal(server.lists, 1, 'no relist');
    assert.equal(server.current.rv, '42');
    await informer.stop();
  });

  it('restarts a failed watch with exponential backoff', async () => {
    const { clock, server, informer } = setup();
    informer.start();
    await informer.synced;
    await settle();
    server.current.onDone(Object.assign(new Error('reset'), { code: 'ECONNRESET' }));
    await settle();
    assert.equal(server.watches.length, 1, 'waits before restarting');
    await clock.advance(100);
    assert.equal(server.watches.length, 2);
    server.current.onDone(Object.assign(new Error('reset'), { code: 'ECONNRESET' }));
    await clock.advance(199);
    assert.equal(server.watches.length, 2, 'second backoff is longer');
    await clock.advance(1);
    assert.equal(server.watches.length, 3);
    assert.equal(informer.status().watchRestarts, 2);
    assert.equal(server.lists, 1);
    await informer.stop();
  });

  it('relists on 410 Gone and reconciles the cache with the new list', async () => {
    const { server, events, informer } = setup();
    server.objects = [obj('a', '5'), obj('b', '6')];
    informer.start();
    await informer.synced;
    await settle();
    server.objects = [obj('a', '20'), obj('c', '21')];
    server.rv = '30';
    server.current.onEvent('ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old' });
    await settle();
    assert.equal(server.lists, 2);
    assert.deepEqual(events.slice(2).sort(), ['add c', 'delete b', 'update a@20']);
    assert.equal(server.current.rv, '30');
    await informer.stop();
  });

  it('relists periodically and re-announces unchanged objects (resync)', async () => {
    const { clock, server, events, informer } = setup({ resyncPeriodMs: 60_000 });
    server.objects = [obj('a', '5')];
    informer.start();
    await informer.synced;
    await settle();
    await clock.advance(53_999); // random() = 0 → period × 0.9
    assert.equal(server.lists, 1);
    await clock.advance(1);
    assert.equal(server.lists, 2);
    assert.ok(server.watches[0]?.aborted, 'the running watch was ended');
    assert.deepEqual(events, ['add a', 'update a@5']);
    await informer.stop();
  });

  it('retries a failed initial list with backoff, and is not synced meanwhile', async () => {
    const { clock, server, informer } = setup();
    server.listFailures = [Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })];
    informer.start();
    await settle();
    assert.equal(informer.hasSynced(), false);
    await clock.advance(100);
    await informer.synced;
    assert.equal(server.lists, 2);
    await informer.stop();
  });

  it('replays cached objects to handlers registered after sync', async () => {
    const { server, informer } = setup();
    server.objects = [obj('a', '5'), obj('b', '6')];
    informer.start();
    await informer.synced;
    const late: string[] = [];
    informer.addEventHandler({ add: (o) => late.push(o.metadata?.name ?? '') });
    assert.deepEqual(late.sort(), ['a', 'b']);
    await informer.stop();
  });
});

describe('trimPod', () => {
  it('keeps what tote reads and drops the rest', () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'p',
        namespace: 'ns',
        uid: 'u',
        labels: { a: 'b' },
        ownerReferences: [{ kind: 'ReplicaSet', name: 'rs', uid: 'o', apiVersion: 'apps/v1' }],
        managedFields: [{ manager: 'kubelet' }],
        resourceVersion: '7',
      },
      spec: {
        nodeName: 'n1',
        containers: [
          { name: 'c', image: 'img:1', imagePullPolicy: 'Always', env: [{ name: 'X', value: 'y' }], command: ['x'] },
        ],
        volumes: [{ name: 'v' }],
      },
      status: {
        phase: 'Pending',
        podIP: '10.0.0.1',
        conditions: [{ type: 'Ready' }],
        containerStatuses: [
          {
            name: 'c',
            image: 'img:1',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ErrImagePull', message: 'm' } },
          },
        ],
      },
    };
    assert.deepEqual(trimPod(pod as KubernetesObject), {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: 'p',
        namespace: 'ns',
        uid: 'u',
        labels: { a: 'b' },
        ownerReferences: [{ kind: 'ReplicaSet', name: 'rs', uid: 'o', apiVersion: 'apps/v1' }],
        resourceVersion: '7',
      },
      spec: { nodeName: 'n1', containers: [{ name: 'c', image: 'img:1', imagePullPolicy: 'Always' }] },
      status: {
        phase: 'Pending',
        containerStatuses: [
          {
            name: 'c',
            image: 'img:1',
            imageID: '',
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: 'ErrImagePull', message: 'm' } },
          },
        ],
      },
    });
  });
});

describe('trimWorkload', () => {
  it('keeps the metadata and the pod template’s labels and container images, and drops the rest', () => {
    const deployment = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'd', namespace: 'ns', uid: 'u', managedFields: [{ manager: 'kubectl' }], resourceVersion: '3' },
      spec: {
        replicas: 0,
        selector: { matchLabels: { app: 'a' } },
        template: {
          metadata: { labels: { app: 'a' }, annotations: { note: 'x' } },
          spec: {
            containers: [{ name: 'c', image: 'img@sha256:1', env: [{ name: 'X', value: 'y' }], resources: {} }],
            initContainers: [{ name: 'i', image: 'init:1' }],
            volumes: [{ name: 'v' }],
          },
        },
      },
      status: { replicas: 0 },
    };
    assert.deepEqual(trimWorkload(deployment), {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'd', namespace: 'ns', uid: 'u', resourceVersion: '3' },
      spec: {
        template: {
          metadata: { labels: { app: 'a' }, annotations: { note: 'x' } },
          spec: {
            containers: [{ name: 'c', image: 'img@sha256:1' }],
            initContainers: [{ name: 'i', image: 'init:1' }],
          },
        },
      },
    });
  });
});
