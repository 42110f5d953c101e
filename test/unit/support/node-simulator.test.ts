// Pure parts of the node simulator: the kubelet's pull back-off, the pod status shape, image defaults, error text.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { status as grpcStatus } from '@grpc/grpc-js';
import type { V1Pod } from '@kubernetes/client-node';
import { PullBackoff } from '../../support/node-simulator/backoff.ts';
import { criErrorMessage } from '../../support/node-simulator/cri.ts';
import { podStatusFor } from '../../support/node-simulator/pod-status.ts';
import type { ContainerOutcome } from '../../support/node-simulator/pod-status.ts';
import { pullPolicyOf, withDefaultTag } from '../../support/node-simulator/simulator.ts';
import { parseDuration } from '../../support/node-simulator/duration.ts';

describe('PullBackoff', () => {
  test('forgets every key of a deleted pod', () => {
    const b = new PullBackoff(10_000, 40_000);
    b.failed('uid1_r/a:1', 0, 'e');
    b.failed('uid2_r/a:1', 0, 'e');
    b.forgetPod('uid1');
    assert.equal(b.inBackoff('uid1_r/a:1', 1), false);
    assert.equal(b.inBackoff('uid2_r/a:1', 1), true);
  });

  test('starts at the initial window, doubles, caps, and starts over after 2×max of quiet', () => {
    const b = new PullBackoff(10_000, 40_000);
    const windows: number[] = [];
    let now = 0;
    for (let i = 0; i < 4; i++) {
      b.failed('k', now, 'err');
      windows.push((b.until('k') ?? 0) - now);
      now += 1;
    }
    assert.deepEqual(windows, [10_000, 20_000, 40_000, 40_000]);
    assert.equal(b.inBackoff('k', now), true);
    assert.equal(b.inBackoff('k', now + 40_000), false);
    b.failed('k', now + 80_001, 'again');
    assert.equal((b.until('k') ?? 0) - (now + 80_001), 10_000);
    assert.equal(b.lastError('k'), 'again');
  });
});

describe('image defaults', () => {
  const cases: [string, string, string][] = [
    ['busybox', 'busybox:latest', 'Always'],
    ['127.0.0.1:5000/a/b', '127.0.0.1:5000/a/b:latest', 'Always'],
    ['127.0.0.1:5000/a/b:1.0', '127.0.0.1:5000/a/b:1.0', 'IfNotPresent'],
    ['r/a@sha256:abc', 'r/a@sha256:abc', 'IfNotPresent'],
  ];
  for (const [image, tagged, policy] of cases) {
    test(`${image} → ${tagged}, ${policy}`, () => {
      assert.equal(withDefaultTag(image), tagged);
      assert.equal(pullPolicyOf({ name: 'c', image }), policy);
    });
  }
});

test('gRPC errors read like grpc-go prints them', () => {
  assert.equal(
    criErrorMessage({ code: grpcStatus.NOT_FOUND, details: 'failed to pull' }),
    'rpc error: code = NotFound desc = failed to pull',
  );
  assert.equal(
    criErrorMessage({ code: grpcStatus.DEADLINE_EXCEEDED, details: 'x' }),
    'rpc error: code = DeadlineExceeded desc = x',
  );
});

test('durations', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('10s'), 10_000);
  assert.equal(parseDuration('5m'), 300_000);
  assert.throws(() => parseDuration('10'));
});

describe('podStatusFor', () => {
  const now = new Date('2026-01-01T00:00:00.123Z');
  const pod = (extra: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod => ({
    metadata: { name: 'p', namespace: 'n', uid: 'u1' },
    spec: { nodeName: 'node-a', containers: [{ name: 'main', image: 'r/x:1' }], ...extra },
    status: {
      phase: 'Pending',
      conditions: [{ type: 'PodScheduled', status: 'True', lastTransitionTime: new Date('2025-12-31T00:00:00Z') }],
    },
  });
  const status = (p: V1Pod, outcomes: [string, ContainerOutcome][]) =>
    podStatusFor({ pod: p, outcomes: new Map(outcomes), now, hostIP: '127.0.0.1', podIP: '10.244.0.2' });

  test('all containers running → Running and Ready, second-precision times, PodScheduled kept', () => {
    const s = status(pod(), [['main', { state: 'running', imageID: 'r/x@sha256:1' }]]);
    assert.equal(s.phase, 'Running');
    assert.equal(s.conditions.find((c) => c.type === 'Ready')?.status, 'True');
    assert.equal(s.conditions.find((c) => c.type === 'PodScheduled')?.status, 'True');
    assert.equal(s.containerStatuses[0]?.imageID, 'r/x@sha256:1');
    assert.deepEqual(s.containerStatuses[0]?.state, { running: { startedAt: '2026-01-01T00:00:00Z' } });
  });

  test('a waiting container → Pending, not Ready, with the reason and message', () => {
    const s = status(pod(), [['main', { state: 'waiting', reason: 'ErrImagePull', message: 'boom' }]]);
    assert.equal(s.phase, 'Pending');
    const ready = s.conditions.find((c) => c.type === 'Ready');
    assert.equal(ready?.status, 'False');
    assert.equal(ready?.message, 'containers with unready status: [main]');
    assert.deepEqual(s.containerStatuses[0]?.state, { waiting: { reason: 'ErrImagePull', message: 'boom' } });
  });

  test('an unfinished init container keeps the main containers in PodInitializing', () => {
    const p = pod({ initContainers: [{ name: 'init', image: 'r/i:1' }] });
    const s = status(p, [['init', { state: 'waiting', reason: 'ImagePullBackOff' }]]);
    assert.equal(s.conditions.find((c) => c.type === 'Initialized')?.status, 'False');
    assert.equal(s.initContainerStatuses?.[0]?.state.waiting?.reason, 'ImagePullBackOff');
    assert.equal(s.containerStatuses[0]?.state.waiting?.reason, 'PodInitializing');
    const done = status(p, [
      ['init', { state: 'completed', imageID: 'r/i@sha256:2' }],
      ['main', { state: 'running', imageID: 'r/x@sha256:1' }],
    ]);
    assert.equal(done.phase, 'Running');
    assert.equal(done.initContainerStatuses?.[0]?.state.terminated?.reason, 'Completed');
  });
});
