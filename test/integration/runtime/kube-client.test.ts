// KubeClient and error conversion against the real API server: 404, 409 (AlreadyExists vs Conflict), 422, optimistic
// locking on update, status and merge patch, create-or-get, JSON patch, delete preconditions.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { KubernetesObject } from '@kubernetes/client-node';
import { ToteError } from '../../../src/api/errors.ts';
import { ensureCluster, testNamespace } from '../../support/index.ts';
import type { ClusterEnv } from '../../support/index.ts';
import { KubeApiError, KubeClient, loadKubeConfig, resources } from '../../../src/runtime/kube.ts';
import type { Lease } from '../../../src/runtime/leader-election.ts';
import type { RequestSample } from '../../../src/runtime/kube-http.ts';
import { tallyApiWait } from '../../../src/runtime/api-wait.ts';

type ConfigMap = KubernetesObject & { data?: Record<string, string> };

/** Asserts that p rejects with a ToteError of the given kind (and reason), returning it. */
async function rejectsWith(p: Promise<unknown>, kind: string, reason?: string): Promise<KubeApiError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof KubeApiError, `a KubeApiError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (reason) assert.equal(err.reason, reason);
    return err;
  }
  assert.fail(`expected a ${kind} error`);
}

/** This process's established TCP connections to `port` (its socket fds matched against /proc/net/tcp{,6}). */
function connectionsTo(port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const link = readlinkSync(`/proc/self/fd/${fd}`);
      if (link.startsWith('socket:[')) inodes.add(link.slice('socket:['.length, -1));
    } catch {
      // closed while listing
    }
  }
  let count = 0;
  for (const table of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const remotePort = parseInt(f[2]?.split(':').pop() ?? '', 16);
      if (remotePort === port && f[3] === '01' && inodes.has(f[9] ?? '')) count++;
    }
  }
  return count;
}

describe('KubeClient (real API server)', () => {
  let env: ClusterEnv;
  let client: KubeClient;
  before(async () => {
    env = await ensureCluster();
    client = new KubeClient(loadKubeConfig(env.kubeconfig));
  });

  const cm = (name: string, namespace: string, data: Record<string, string> = {}): ConfigMap => ({
    metadata: { name, namespace },
    data,
  });

  it('converts 404, 409 AlreadyExists, 409 Conflict and 422', async (t) => {
    const ns = await testNamespace(env, t);
    const notFound = await rejectsWith(client.get(resources.configMaps, 'nope', ns.name), 'not-found', 'NotFound');
    assert.equal(notFound.code, 404);
    assert.equal(await client.getOrUndefined(resources.configMaps, 'nope', ns.name), undefined);

    const v1 = await client.create(resources.configMaps, cm('c', ns.name, { k: '1' }));
    await rejectsWith(client.create(resources.configMaps, cm('c', ns.name)), 'already-exists', 'AlreadyExists');

    await client.update(resources.configMaps, { ...v1, data: { k: '2' } });
    const stale = await rejectsWith(
      client.update(resources.configMaps, { ...v1, data: { k: '3' } }),
      'conflict',
      'Conflict',
    );
    assert.equal(stale.code, 409);

    const invalid = await rejectsWith(
      client.create(resources.configMaps, cm('Not_A_Name', ns.name)),
      'terminal',
      'Invalid',
    );
    assert.equal(invalid.code, 422);
    assert.match(invalid.message, /Not_A_Name/, 'the server message is kept');
  });

  it('makes merge patches conditional on resourceVersion', async (t) => {
    const ns = await testNamespace(env, t);
    const v1 = await client.create(resources.configMaps, cm('p', ns.name, { a: '1' }));
    const v2 = await client.mergePatch<ConfigMap>(
      resources.configMaps,
      'p',
      ns.name,
      { data: { b: '2' } },
      {
        resourceVersion: v1.metadata?.resourceVersion,
      },
    );
    assert.deepEqual(v2.data, { a: '1', b: '2' });
    await rejectsWith(
      client.mergePatch(
        resources.configMaps,
        'p',
        ns.name,
        { data: { c: '3' } },
        { resourceVersion: v1.metadata?.resourceVersion },
      ),
      'conflict',
    );
    const v3 = await client.jsonPatch<ConfigMap>(resources.configMaps, 'p', ns.name, [
      { op: 'remove', path: '/data/a' },
    ]);
    assert.deepEqual(v3.data, { b: '2' });
  });

  it('creates or gets idempotently', async (t) => {
    const ns = await testNamespace(env, t);
    const first = await client.createOrGet(resources.configMaps, cm('once', ns.name, { v: '1' }));
    const second = await client.createOrGet(resources.configMaps, cm('once', ns.name, { v: 'other' }));
    assert.equal(first.created, true);
    assert.equal(second.created, false);
    assert.equal(second.object.metadata?.uid, first.object.metadata?.uid);
    assert.deepEqual((second.object as ConfigMap).data, { v: '1' }, 'the existing object, untouched');
  });

  it('writes the status subresource under the optimistic lock', async (t) => {
    const ns = await testNamespace(env, t);
    // A Namespace has a status subresource and no controller rewriting it: a convenient real target.
    const nsObj = await client.get<KubernetesObject & { status?: Record<string, unknown> }>(
      resources.namespaces,
      ns.name,
    );
    const updated = await client.updateStatus(resources.namespaces, {
      ...nsObj,
      status: { ...nsObj.status, phase: 'Active' },
    });
    assert.notEqual(updated.metadata?.resourceVersion, undefined);
    await rejectsWith(
      client.updateStatus(resources.namespaces, { ...nsObj, metadata: { ...nsObj.metadata, resourceVersion: '1' } }),
      'conflict',
    );
    await assert.rejects(
      client.updateStatus(resources.namespaces, {
        ...nsObj,
        metadata: { ...nsObj.metadata, resourceVersion: undefined },
      }),
      (e: unknown) => e instanceof ToteError && e.reason === 'MissingResourceVersion',
    );
  });

  it('deletes only the object it was asked to (uid precondition) and reports absence', async (t) => {
    const ns = await testNamespace(env, t);
    const lease = await client.create<Lease>(resources.leases, {
      metadata: { name: 'l', namespace: ns.name },
      spec: {},
    });
    await rejectsWith(client.delete(resources.leases, 'l', ns.name, { uid: 'not-the-uid' }), 'conflict');
    assert.equal(await client.delete(resources.leases, 'l', ns.name, { uid: lease.metadata?.uid }), true);
    assert.equal(await client.delete(resources.leases, 'l', ns.name), false);
  });

  it('keeps its connections to the API server: a run of calls reuses one, not a TLS handshake each', async (t) => {
    const ns = await testNamespace(env, t);
    const config = loadKubeConfig(env.kubeconfig);
    const port = Number(new URL(config.server).port);
    const fresh = new KubeClient(config);
    const before = connectionsTo(port);
    for (let i = 0; i < 30; i++) await fresh.getOrUndefined(resources.configMaps, `absent-${i}`, ns.name);
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => fresh.getOrUndefined(resources.configMaps, `absent-${i}`, ns.name)),
    );
    // Idle keep-alive connections stay open for seconds: a connection per call would show here as 40.
    const opened = connectionsTo(port) - before;
    assert.ok(opened >= 1, 'the calls went over TCP connections this process holds');
    assert.ok(opened <= 11, `${opened} connections for 40 calls`);
  });

  it('tells its observer of every request: verb, resource, status code, a duration', async (t) => {
    const ns = await testNamespace(env, t);
    const samples: RequestSample[] = [];
    const observed = new KubeClient(loadKubeConfig(env.kubeconfig), { observeRequest: (s) => samples.push(s) });
    await observed.create(resources.configMaps, cm('seen', ns.name));
    await observed.getOrUndefined(resources.configMaps, 'absent', ns.name);
    await assert.rejects(observed.create(resources.configMaps, cm('seen', ns.name)));
    assert.deepEqual(
      samples.map(({ method, resource, statusCode }) => ({ method, resource, statusCode })),
      [
        { method: 'POST', resource: 'configmaps', statusCode: 201 },
        { method: 'GET', resource: 'configmaps', statusCode: 404 },
        { method: 'POST', resource: 'configmaps', statusCode: 409 },
      ],
    );
    for (const s of samples) assert.ok(s.seconds > 0 && s.seconds < 30, `${s.seconds} s`);

    // The same durations add up in the tally of the reconcile (here: the function) they ran in.
    const tally = { seconds: 0 };
    const before = samples.length;
    await tallyApiWait(tally, async () => {
      await observed.getOrUndefined(resources.configMaps, 'seen', ns.name);
      await observed.getOrUndefined(resources.configMaps, 'absent', ns.name);
    });
    const charged = samples.slice(before).reduce((sum, s) => sum + s.seconds, 0);
    assert.ok(tally.seconds > 0 && Math.abs(tally.seconds - charged) < 1e-9, `${tally.seconds} s vs ${charged} s`);
  });
});
