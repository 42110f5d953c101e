import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Node } from '@kubernetes/client-node';
import { planPins, planProtection } from '../../../src/controller/protection/protection-plan.ts';
import type {
  DigestFacts,
  ExistingRecord,
  NodeFacts,
  ProtectionInput,
} from '../../../src/controller/protection/protection-plan.ts';
import { leavingReason } from '../../../src/controller/protection/leaving-nodes.ts';
import { digest } from './factories.ts';

const node = (name: string, overrides: Partial<NodeFacts> = {}): NodeFacts => ({
  name,
  platform: 'linux/amd64',
  zone: undefined,
  leaving: undefined,
  agentAlive: true,
  diskPressure: false,
  ...overrides,
});
const threeNodes = [node('node-a'), node('node-b'), node('node-c')];
const facts = (holders: string[], registry: DigestFacts['registry'] = 'gone') =>
  new Map([[digest, { holders, registry }]]);

const input = (overrides: Partial<ProtectionInput> = {}): ProtectionInput => ({
  images: [{ digest, imageRef: 'registry.example.com/team/app:1.4', namespace: 'team' }],
  facts: facts(['node-a']),
  nodes: threeNodes,
  records: [],
  minCopies: 2,
  evacuateOnDrain: true,
  ...overrides,
});

describe('planProtection: which images are endangered and where their copies go', () => {
  const cases: {
    name: string;
    input: ProtectionInput;
    endangered: { reason: string; newTargets: string[]; shortBy?: number }[];
    lost?: string[];
  }[] = [
    {
      name: 'the registry still serves it: safe',
      input: input({ facts: facts(['node-a'], 'serves') }),
      endangered: [],
    },
    {
      name: 'the registry was not asked yet: not judged',
      input: input({ facts: facts(['node-a'], 'unknown') }),
      endangered: [],
    },
    { name: 'not surveyed yet: not judged', input: input({ facts: new Map() }), endangered: [] },
    {
      name: 'one copy, registry gone, two wanted: one more copy, first node by name',
      input: input(),
      endangered: [{ reason: 'Endangered', newTargets: ['node-b'] }],
    },
    {
      name: 'a registry that does not answer counts as gone: a new node could not pull either',
      input: input({ facts: facts(['node-a'], 'unreachable') }),
      endangered: [{ reason: 'Endangered', newTargets: ['node-b'] }],
    },
    { name: 'enough copies already', input: input({ facts: facts(['node-a', 'node-c']) }), endangered: [] },
    {
      name: 'three wanted: every other node',
      input: input({ minCopies: 3 }),
      endangered: [{ reason: 'Endangered', newTargets: ['node-b', 'node-c'] }],
    },
    {
      name: 'more wanted than nodes exist: short by the rest',
      input: input({ minCopies: 5 }),
      endangered: [{ reason: 'Endangered', newTargets: ['node-b', 'node-c'], shortBy: 2 }],
    },
    {
      name: 'a copy on its way counts: nothing more asked',
      input: input({ records: [{ digest, targetNode: 'node-b', active: true }] }),
      endangered: [{ reason: 'Endangered', newTargets: [] }],
    },
    {
      name: 'a finished record that left no copy: that node is not asked again, another is',
      input: input({ records: [{ digest, targetNode: 'node-b', active: false }] }),
      endangered: [{ reason: 'Endangered', newTargets: ['node-c'] }],
    },
    {
      name: 'the only holder is cordoned: evacuation, to staying nodes only',
      input: input({
        minCopies: 1,
        nodes: [node('node-a', { leaving: 'cordoned' }), node('node-b', { leaving: 'cordoned' }), node('node-c')],
      }),
      endangered: [{ reason: 'Evacuation', newTargets: ['node-c'] }],
    },
    {
      name: 'a leaving holder still counts when the policy does not evacuate',
      input: input({
        minCopies: 1,
        evacuateOnDrain: false,
        nodes: [node('node-a', { leaving: 'cordoned' }), node('node-b')],
      }),
      endangered: [],
    },
    {
      name: 'a deleted holder does not count',
      input: input({ minCopies: 1, facts: facts(['node-gone']) }),
      endangered: [{ reason: 'Evacuation', newTargets: ['node-a'] }],
    },
    {
      name: 'no node holds it: lost, nothing to copy',
      input: input({ facts: facts([]) }),
      endangered: [],
      lost: [digest],
    },
    {
      name: 'never to a node of another platform, without an agent, or under disk pressure',
      input: input({
        nodes: [
          node('node-a'),
          node('node-b', { platform: 'linux/arm64' }),
          node('node-c', { agentAlive: false }),
          node('node-d', { diskPressure: true }),
          node('node-e', { platform: 'linux/amd64/v2' }),
        ],
      }),
      endangered: [{ reason: 'Endangered', newTargets: ['node-e'] }],
    },
    {
      name: 'copies spread over zones: the zone without one first',
      input: input({
        minCopies: 3,
        nodes: [
          node('node-a', { zone: 'z1' }),
          node('node-b', { zone: 'z1' }),
          node('node-c', { zone: 'z1' }),
          node('node-d', { zone: 'z2' }),
          node('node-e', { zone: 'z3' }),
        ],
      }),
      endangered: [{ reason: 'Endangered', newTargets: ['node-d', 'node-e'] }],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const plan = planProtection(c.input);
      assert.deepEqual(
        plan.endangered.map((e) => ({ reason: e.reason, newTargets: e.newTargets, shortBy: e.shortBy })),
        c.endangered.map((e) => ({ reason: e.reason, newTargets: e.newTargets, shortBy: e.shortBy ?? 0 })),
      );
      assert.deepEqual(plan.lost, c.lost ?? []);
    });
  }

  it('tells which holders count and which are leaving', () => {
    const records: ExistingRecord[] = [{ digest, targetNode: 'node-c', active: true }];
    const [e] = planProtection(
      input({
        minCopies: 3,
        facts: facts(['node-b', 'node-a']),
        nodes: [node('node-a', { leaving: 'cordoned' }), node('node-b'), node('node-c'), node('node-d')],
        records,
      }),
    ).endangered;
    assert.deepEqual(e?.holders, ['node-a', 'node-b']);
    assert.deepEqual(e?.safeHolders, ['node-b']);
    assert.deepEqual(e?.leavingHolders, ['node-a']);
    assert.equal(e?.copiesOnTheWay, 1);
    assert.deepEqual(e?.newTargets, ['node-d']);
  });
});

describe('leavingReason: what announces a node’s removal', () => {
  const withSpec = (spec: V1Node['spec']): V1Node => ({ metadata: { name: 'n' }, spec });
  const cases: { name: string; node: V1Node; leaving: boolean }[] = [
    { name: 'a schedulable node stays', node: withSpec({}), leaving: false },
    { name: 'cordoned', node: withSpec({ unschedulable: true }), leaving: true },
    {
      name: 'cluster-autoscaler scale-down',
      node: withSpec({ taints: [{ key: 'ToBeDeletedByClusterAutoscaler', effect: 'NoSchedule' }] }),
      leaving: true,
    },
    {
      name: 'Karpenter v1',
      node: withSpec({ taints: [{ key: 'karpenter.sh/disrupted', effect: 'NoSchedule' }] }),
      leaving: true,
    },
    {
      name: 'Karpenter before v1',
      node: withSpec({ taints: [{ key: 'karpenter.sh/disruption', value: 'disrupting', effect: 'NoSchedule' }] }),
      leaving: true,
    },
    {
      name: 'unschedulable taint',
      node: withSpec({ taints: [{ key: 'node.kubernetes.io/unschedulable', effect: 'NoSchedule' }] }),
      leaving: true,
    },
    {
      name: 'another taint does not',
      node: withSpec({ taints: [{ key: 'dedicated', effect: 'NoSchedule' }] }),
      leaving: false,
    },
  ];
  for (const c of cases) it(c.name, () => assert.equal(leavingReason(c.node) !== undefined, c.leaving));
});

describe('planPins: copies of images no registry serves stay pinned; tote’s pins come off when it serves them', () => {
  const now = 1_000_000;
  const ttl = 6 * 3600;
  const pinsOf = (registry: DigestFacts['registry'], pinnedUntil: [string, number][]) =>
    planPins({
      images: [{ digest, imageRef: 'registry.example.com/team/app:1.4', namespace: 'team' }],
      facts: new Map([[digest, { holders: ['node-a', 'node-b'], registry, pinnedUntil: new Map(pinnedUntil) }]]),
      nowSeconds: now,
      pinTtlSeconds: ttl,
    }).map((c) => `${c.pin ? 'pin' : 'unpin'} ${c.node}`);
  const cases: { name: string; registry: DigestFacts['registry']; pinned: [string, number][]; want: string[] }[] = [
    {
      name: 'gone, nothing pinned: pin every holder',
      registry: 'gone',
      pinned: [],
      want: ['pin node-a', 'pin node-b'],
    },
    {
      name: 'gone, one pin fresh, one past half-life: renew only that one',
      registry: 'unreachable',
      pinned: [
        ['node-a', now + ttl],
        ['node-b', now + ttl / 2 - 1],
      ],
      want: ['pin node-b'],
    },
    {
      name: 'served again: tote’s pins come off',
      registry: 'serves',
      pinned: [['node-a', now + ttl]],
      want: ['unpin node-a'],
    },
    { name: 'served, never pinned by tote: nothing', registry: 'serves', pinned: [], want: [] },
    { name: 'registry not asked yet: nothing', registry: 'unknown', pinned: [], want: [] },
  ];
  for (const c of cases) it(c.name, () => assert.deepEqual(pinsOf(c.registry, c.pinned), c.want));
});
