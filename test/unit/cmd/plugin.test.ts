// The pure parts of the laptop commands (status, why, salvage): argument splitting, the status summary, a pod's
// explanation for every kind of answer, and the record `salvage` makes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Lease, V1Node } from '@kubernetes/client-node';
import { agentLeaseLabels, agentAddressAnnotation } from '../../../src/api/agent-lease.ts';
import { agentsOf, leaderOf } from '../../../src/cmd/plugin/cluster-facts.ts';
import { manualRecord } from '../../../src/cmd/plugin/salvage.ts';
import { summariseStatus } from '../../../src/cmd/plugin/status.ts';
import { explainPod } from '../../../src/cmd/plugin/why.ts';
import type { WhyFacts } from '../../../src/cmd/plugin/why.ts';
import {
  pluginAliases,
  pluginOptions,
  splitPositionals,
  parsePluginConfig,
  ConfigError,
} from '../../../src/runtime/config/index.ts';
import { digest, now, pod, record, salvagePolicy } from '../controller/factories.ts';

const t = now.getTime();
const node = (name: string, annotations: Record<string, string> = {}): V1Node => ({ metadata: { name, annotations } });
const agentLease = (nodeName: string, renewedMsAgo: number): V1Lease => ({
  metadata: {
    name: `tote-agent-${nodeName}`,
    labels: { [agentLeaseLabels.node]: nodeName },
    annotations: { [agentAddressAnnotation]: `10.0.0.1:9443` },
  },
  spec: { renewTime: new Date(t - renewedMsAgo) as never, leaseDurationSeconds: 30 },
});
const leaderLease = (renewedMsAgo: number): V1Lease => ({
  metadata: { name: 'tote-controller-leader' },
  spec: {
    holderIdentity: 'tote-controller-0',
    renewTime: new Date(t - renewedMsAgo) as never,
    leaseDurationSeconds: 15,
  },
});

describe('splitPositionals and parsePluginConfig', () => {
  it('separates words from flags, keeping a spaced flag value with its flag, and spells -n out', () => {
    const split = splitPositionals(
      pluginOptions,
      ['my-pod', '--kubeconfig', '/k', '-n', 'team', '--output=json'],
      pluginAliases,
    );
    assert.deepEqual(split.positionals, ['my-pod']);
    assert.deepEqual(split.flags, ['--kubeconfig', '/k', '--namespace', 'team', '--output=json']);
  });

  it('refuses a missing or extra word, naming the usage', () => {
    const command = { usage: 'why POD', description: '', positionals: 1 };
    assert.throws(() => parsePluginConfig(command, [], {}), ConfigError);
    assert.throws(() => parsePluginConfig(command, ['a', 'b'], {}), /why POD: expected 1 argument/);
    assert.equal(parsePluginConfig(command, ['a', '-n', 'x'], {}).config.namespace, 'x');
  });
});

describe('leaderOf and agentsOf', () => {
  it('a leader renewed within its lease is alive; one past it is not; no holder is no leader', () => {
    assert.equal(leaderOf(leaderLease(5_000), t).alive, true);
    assert.equal(leaderOf(leaderLease(20_000), t).alive, false);
    assert.deepEqual(leaderOf(undefined, t).holder, undefined);
  });

  it('one entry per real node: alive, expired, or without a Lease; kwok nodes have no agent', () => {
    const nodes = [node('a'), node('b'), node('c'), node('fake', { 'kwok.x-k8s.io/node': 'fake' })];
    const agents = agentsOf(nodes, [agentLease('a', 1_000), agentLease('b', 60_000)], t);
    assert.deepEqual(
      agents.map((a) => [a.node, a.alive]),
      [
        ['a', true],
        ['b', false],
        ['c', false],
      ],
    );
    assert.match(agents[1]?.problem ?? '', /expired 30s ago/);
    assert.match(agents[2]?.problem ?? '', /no agent Lease/);
  });
});

describe('summariseStatus', () => {
  const named = (name: string, status: Parameters<typeof record>[0], ns = 'team') => {
    const r = record(status);
    return { ...r, metadata: { ...r.metadata, name, namespace: ns } };
  };

  it('lists records in flight, counts finished ones by phase, and flags images with one copy or none', () => {
    const records = [
      named('moving', {
        phase: 'Transferring',
        digest,
        sourceNode: 'node-a',
        candidates: ['node-a'],
        progress: { percent: '40%' },
      }),
      named('safe', { phase: 'Locating', digest: `sha256:${'1'.repeat(64)}`, candidates: ['node-a', 'node-c'] }),
      named('resolving', { phase: 'Resolving' }),
      named('done', { phase: 'Completed' }),
      named('done-too', { phase: 'Completed' }),
      named('gave-up', { phase: 'Failed' }),
    ];
    const report = summariseStatus(records, leaderLease(1_000), [node('node-a')], [agentLease('node-a', 0)], t);
    assert.deepEqual(
      report.inFlight.map((r) => [r.name, r.phase]),
      [
        ['moving', 'Transferring'],
        ['resolving', 'Resolving'],
        ['safe', 'Locating'],
      ],
    );
    assert.equal(report.inFlight[0]?.progress, '40%');
    assert.deepEqual(report.finished, { Completed: 2, Failed: 1 });
    assert.deepEqual(report.endangered, [
      { digest, image: 'registry.example.com/team/app:1.4', copies: ['node-a'], records: ['team/moving'] },
    ]);
    assert.equal(report.controller.holder, 'tote-controller-0');
    assert.equal(report.agents[0]?.alive, true);
  });
});

describe('explainPod', () => {
  const stuckPod = pod({ waiting: { reason: 'ErrImagePull', message: 'not found' } });
  const facts = (overrides: Partial<WhyFacts> = {}): WhyFacts => ({
    pod: stuckPod,
    namespace: { metadata: { name: 'team', labels: { salvage: 'on' } } },
    policies: [salvagePolicy('team', { namespaceSelector: { matchLabels: { salvage: 'on' } } })],
    ownerAnnotations: [],
    nodes: [],
    records: [],
    controller: leaderOf(leaderLease(1_000), t),
    ...overrides,
  });
  const only = (f: WhyFacts) => {
    const verdicts = explainPod(f);
    assert.equal(verdicts.length, 1);
    return verdicts[0]!;
  };

  it('a running pod: nothing to do', () => {
    const v = only(facts({ pod: pod() }));
    assert.equal(v.stuck, undefined);
    assert.match(v.next, /not stuck/);
  });

  it('stuck and in scope, no record yet: names the policy and says the controller creates one', () => {
    const v = only(facts());
    assert.deepEqual(v.stuck, { reason: 'ErrImagePull', message: 'not found' });
    assert.deepEqual(v.policy, { name: 'team', mode: 'Salvage' });
    assert.match(v.next, /creates a SalvageRecord/);
  });

  it('stuck but no policy selects it: says why and that tote leaves it alone', () => {
    const v = only(facts({ policies: [] }));
    assert.equal(v.inScope, false);
    assert.match(v.scope, /no SalvagePolicy selects this pod/);
    assert.match(v.next, /leaves pods out of its scope alone/);
  });

  it('opted in by the 0.x annotations on namespace and owner', () => {
    const v = only(
      facts({
        policies: [],
        namespace: { metadata: { name: 'team', annotations: { 'tote.dev/allow': 'true' } } },
        ownerAnnotations: [{ 'tote.dev/auto-salvage': 'true' }],
      }),
    );
    assert.equal(v.inScope, true);
    assert.match(v.scope, /opted in by the tote.dev\/allow and tote.dev\/auto-salvage annotations/);
  });

  it('a system namespace is never in scope', () => {
    const v = only(facts({ pod: pod({ namespace: 'kube-system', waiting: { reason: 'ErrImagePull' } }) }));
    assert.equal(v.inScope, false);
    assert.match(v.scope, /system namespace/);
  });

  it('DetectOnly: the controller records but moves nothing', () => {
    const detect = salvagePolicy('team', { mode: 'DetectOnly', namespaceSelector: { matchLabels: { salvage: 'on' } } });
    assert.match(only(facts({ policies: [detect] })).next, /DetectOnly/);
  });

  it('no live controller: nothing happens until one runs', () => {
    assert.match(only(facts({ controller: leaderOf(undefined, t) })).next, /no live tote controller/);
  });

  for (const [phase, next] of [
    ['Resolving', /resolves the image's digest/],
    ['Locating', /looks for a node holding a complete copy/],
    ['Transferring', /being copied from node-a to node-b \(40%\)/],
    ['Restarting', /restarts the pod/],
    ['Pushing', /backup registry/],
    ['Completed', /kubelet starts the container on its next retry/],
    ['Failed', /the salvage failed \(it broke\)/],
    ['NotActionable', /nothing: it broke/],
    ['Skipped', /skipped \(it broke\)/],
  ] as const) {
    it(`the pod's record in ${phase}: ${next.source}`, () => {
      const r = record(
        { phase, sourceNode: 'node-a', progress: { percent: '40%' }, message: 'it broke' },
        { podRef: { name: 'app-1', uid: 'app-1-uid' }, container: 'app' },
      );
      const v = only(facts({ records: [r] }));
      assert.equal(v.record?.phase, phase);
      assert.match(v.next, next);
    });
  }
});

describe('manualRecord', () => {
  it('the one stuck container, named as the controller names it, reason Manual, with the pod', () => {
    const made = manualRecord(pod({ waiting: { reason: 'ErrImagePull' } }), [], undefined);
    assert.ok('record' in made);
    assert.deepEqual(made.record.spec, {
      imageRef: 'registry.example.com/team/app:1.4',
      targetNode: 'node-b',
      reason: 'Manual',
      podRef: { name: 'app-1', uid: 'app-1-uid' },
      container: 'app',
    });
    assert.match(made.record.metadata?.name ?? '', /^ref-[a-f0-9]{10}-node-b$/);
    assert.equal(made.record.metadata?.namespace, 'team');
  });

  it('a pod with nothing stuck needs -c; an unknown container or an unscheduled pod is refused', () => {
    const running = pod();
    assert.match((manualRecord(running, [], undefined) as { problem: string }).problem, /no container stuck.*-c/);
    assert.ok('record' in manualRecord(running, [], 'app'));
    assert.match((manualRecord(running, [], 'nope') as { problem: string }).problem, /no container nope/);
    const unscheduled = { ...running, spec: { ...running.spec!, nodeName: undefined } };
    assert.match((manualRecord(unscheduled, [], 'app') as { problem: string }).problem, /not scheduled/);
  });
});
