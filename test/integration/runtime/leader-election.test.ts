// Leader election on a real Lease: two electors, exactly one leads; the other takes over when the leader stops
// (released at once) or dies without releasing (after the lease expires). Short timings; every wait is on a callback
// with a deadline.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ensureCluster, testNamespace } from '../../support/index.ts';
import type { ClusterEnv } from '../../support/index.ts';
import { KubeClient, loadKubeConfig, resources } from '../../../src/runtime/kube.ts';
import { LeaderElector } from '../../../src/runtime/leader-election.ts';
import type { Lease } from '../../../src/runtime/leader-election.ts';
import type { RequestSample } from '../../../src/runtime/kube-http.ts';
import { Condition, withDeadline } from './deadline.ts';

interface Candidate {
  elector: LeaderElector;
  started: Promise<string>;
  stopped: Promise<string>;
  leadership: AbortSignal | undefined;
  /** Notified whenever the elector observes a new leader. */
  observed: Condition;
}

describe('leader election (real API server)', () => {
  let env: ClusterEnv;
  before(async () => {
    env = await ensureCluster();
  });

  function candidate(
    namespace: string,
    identity: string,
    releaseOnStop = true,
    observeRequest?: (sample: RequestSample) => void,
  ): Candidate {
    let onStarted!: (id: string) => void;
    let onStopped!: (id: string) => void;
    const c: Candidate = {
      started: new Promise((resolve) => (onStarted = resolve)),
      stopped: new Promise((resolve) => (onStopped = resolve)),
      leadership: undefined,
      observed: new Condition(),
      elector: new LeaderElector({
        client: new KubeClient(loadKubeConfig(env.kubeconfig), {
          requestTimeoutMs: 1000,
          ...(observeRequest ? { observeRequest } : {}),
        }),
        namespace,
        name: 'tote-test-leader',
        identity,
        leaseDurationMs: 2000,
        renewDeadlineMs: 1500,
        retryPeriodMs: 200,
        releaseOnStop,
        onStartedLeading: (signal) => {
          c.leadership = signal;
          onStarted(identity);
        },
        onStoppedLeading: () => onStopped(identity),
        onNewLeader: () => c.observed.notify(),
      }),
    };
    return c;
  }

  async function electOne(a: Candidate, b: Candidate): Promise<[Candidate, Candidate]> {
    void a.elector.start();
    void b.elector.start();
    const first = await withDeadline(Promise.race([a.started, b.started]), 10_000, 'a first leader');
    return first === a.elector.identity ? [a, b] : [b, a];
  }

  it('elects exactly one leader; the standby takes over at once when the leader stops', async (t) => {
    const ns = await testNamespace(env, t);
    const a = candidate(ns.name, 'a');
    const b = candidate(ns.name, 'b');
    t.after(() => Promise.all([a.elector.stop(), b.elector.stop()]));
    const [leader, standby] = await electOne(a, b);
    assert.equal(leader.elector.isLeader(), true);
    assert.equal(standby.elector.isLeader(), false);

    // Several renew periods later the standby is still standing by, and knows who leads.
    const client = new KubeClient(loadKubeConfig(env.kubeconfig));
    const lease1 = await client.get<Lease>(resources.leases, 'tote-test-leader', ns.name);
    assert.equal(lease1.spec?.holderIdentity, leader.elector.identity);
    await withDeadline(
      (async () => {
        for (;;) {
          const lease = await client.get<Lease>(resources.leases, 'tote-test-leader', ns.name);
          if (lease.spec?.renewTime !== lease1.spec?.renewTime) return;
        }
      })(),
      5000,
      'the leader to renew',
    );
    await standby.observed.until(
      () => standby.elector.leader === leader.elector.identity,
      5000,
      'the standby to observe the leader',
    );
    assert.equal(standby.elector.isLeader(), false, 'never two leaders');

    const stoppedAt = Date.now();
    await leader.elector.stop();
    assert.equal(await withDeadline(leader.stopped, 1000, 'onStoppedLeading'), leader.elector.identity);
    assert.equal(leader.leadership?.aborted, true, "the old leader's signal aborted");
    await withDeadline(standby.started, 5000, 'the standby to take over');
    // Released: no need to wait out the 2 s lease.
    assert.ok(Date.now() - stoppedAt < 2000, `took over in ${Date.now() - stoppedAt} ms`);
    const lease2 = await client.get<Lease>(resources.leases, 'tote-test-leader', ns.name);
    assert.equal(lease2.spec?.holderIdentity, standby.elector.identity);
    assert.equal(lease2.spec?.leaseTransitions, (lease1.spec?.leaseTransitions ?? 0) + 1);
  });

  it('takes over after the lease expires when the leader dies without releasing', async (t) => {
    const ns = await testNamespace(env, t);
    const a = candidate(ns.name, 'a', false);
    const b = candidate(ns.name, 'b', false);
    t.after(() => Promise.all([a.elector.stop(), b.elector.stop()]));
    const [leader, standby] = await electOne(a, b);
    const stoppedAt = Date.now();
    await leader.elector.stop(); // stops renewing, leaves the lease held: like a crash
    await withDeadline(standby.started, 10_000, 'the standby to take over');
    const waited = Date.now() - stoppedAt;
    assert.ok(waited >= 1500, `respected the lease (took over after ${waited} ms)`);
    assert.equal(leader.elector.isLeader(), false);
    assert.equal(standby.elector.isLeader(), true);
  });

  it('renews with one write and no read; after someone else writes the lease, reads it once and renews', async (t) => {
    const ns = await testNamespace(env, t);
    const requests: string[] = [];
    const sent = new Condition();
    const a = candidate(ns.name, 'a', true, (s) => {
      requests.push(`${s.method} ${s.statusCode ?? 'none'}`);
      sent.notify();
    });
    t.after(() => a.elector.stop());
    void a.elector.start();
    await withDeadline(a.started, 10_000, 'leadership');
    const renewalsFrom = requests.length;
    await sent.until(() => requests.length - renewalsFrom >= 5, 5000, 'five renewals');
    assert.deepEqual(requests.slice(renewalsFrom, renewalsFrom + 5), Array(5).fill('PUT 200'));

    // A label added by someone else moves the resourceVersion: the leader's next write is refused, it reads the
    // Lease again and renews over it, keeping the label.
    const client = new KubeClient(loadKubeConfig(env.kubeconfig));
    const touchedFrom = requests.length;
    await client.mergePatch(resources.leases, 'tote-test-leader', ns.name, {
      metadata: { labels: { touched: 'yes' } },
    });
    const recovered = () => requests.slice(touchedFrom).join(',').includes('PUT 409,GET 200,PUT 200');
    await sent.until(recovered, 5000, 'a refused renewal, a read and a renewal');
    assert.equal(a.elector.isLeader(), true);
    const lease = await client.get<Lease>(resources.leases, 'tote-test-leader', ns.name);
    assert.equal(lease.spec?.holderIdentity, 'a');
    assert.equal(lease.metadata?.labels?.touched, 'yes');
  });
});
