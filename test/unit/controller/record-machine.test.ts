import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  decide,
  defaultMachineSettings,
  maxHistory,
  retryDelayMs,
  retryPendingMs,
  wantedReferences,
} from '../../../src/controller/record/record-machine.ts';
import type { RecordAction, TransferObservation } from '../../../src/controller/record/record-machine.ts';
import { digest, now, observation, policy, record, waitingPod } from './factories.ts';

const types = (actions: RecordAction[]) => actions.map((a) => a.type);
const transfer = (overrides: Partial<TransferObservation> = {}): TransferObservation => ({
  state: 'transferring',
  source: 'node-a',
  totalBytes: 1000,
  presentBytes: 200,
  transferredBytes: 300,
  totalBlobs: 4,
  transferredBlobs: 1,
  ...overrides,
});
const at = (phase: string, extra: object = {}) =>
  record({
    phase: phase as never,
    digest,
    sourceNode: 'node-a',
    attempts: 1,
    candidates: ['node-a', 'node-c'],
    observedGeneration: 1,
    pods: [{ name: 'app-1', uid: 'pod-1' }],
    ...extra,
  });

describe('decide: the happy path, phases that follow without a call-out in one decision', () => {
  const steps: {
    name: string;
    rec: ReturnType<typeof record>;
    obs: Parameters<typeof decide>[1];
    phase: string;
    actions: string[];
  }[] = [
    {
      name: 'Pending → Resolving while the digest is being looked up',
      rec: record(),
      obs: observation(),
      phase: 'Resolving',
      actions: ['notify'],
    },
    {
      name: 'Pending → Resolving → Locating → Transferring once the digest and the holders are known',
      rec: record(),
      obs: observation({
        digest: { kind: 'resolved', digest, source: 'agent' },
        candidates: [{ node: 'node-a' }],
        imageBytes: 1000,
        transferSlotFree: true,
      }),
      phase: 'Transferring',
      actions: ['notify', 'startTransfer', 'notify'],
    },
    {
      name: 'Resolving → Locating with the pod status digest',
      rec: record({ phase: 'Resolving' }),
      obs: observation({ digest: { kind: 'resolved', digest, source: 'pod' } }),
      phase: 'Locating',
      actions: [],
    },
    {
      name: 'Locating → Transferring from the best candidate',
      rec: record({ phase: 'Locating', digest }),
      obs: observation({
        candidates: [{ node: 'node-a' }, { node: 'node-c' }],
        imageBytes: 1000,
        transferSlotFree: true,
      }),
      phase: 'Transferring',
      actions: ['startTransfer'],
    },
    {
      name: 'Transferring → Importing',
      rec: at('Transferring'),
      obs: observation({ transfer: transfer({ state: 'importing' }) }),
      phase: 'Importing',
      actions: [],
    },
    {
      name: 'Importing → Restarting → Completed, deleting the owned pod, with one Event',
      rec: at('Importing'),
      obs: observation({ transfer: transfer({ state: 'succeeded', transferredBytes: 800, transferredBlobs: 3 }) }),
      phase: 'Completed',
      actions: ['forgetTransfer', 'deletePod', 'event', 'notify'],
    },
    {
      name: 'Restarting → Completed without backup',
      rec: at('Restarting'),
      obs: observation(),
      phase: 'Completed',
      actions: ['deletePod', 'event', 'notify'],
    },
  ];
  for (const s of steps) {
    it(s.name, () => {
      const d = decide(s.rec, s.obs);
      assert.equal(d.status?.phase, s.phase);
      assert.deepEqual(types(d.actions), s.actions);
      const last = d.status?.history?.at(-1);
      assert.equal(last?.phase, s.phase, 'every transition leaves a history entry');
      assert.equal(last?.time, now.toISOString());
    });
  }

  it('a Completed record has Ready=True and completedAt', () => {
    const d = decide(at('Restarting'), observation());
    assert.equal(d.status?.completedAt, now.toISOString());
    assert.equal(d.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
  });

  it('one decision keeps every phase it passed through in the history', () => {
    const d = decide(
      record(),
      observation({
        digest: { kind: 'resolved', digest, source: 'agent' },
        candidates: [{ node: 'node-a' }, { node: 'node-c' }],
        transferSlotFree: true,
      }),
    );
    assert.deepEqual(
      d.status?.history?.map((h) => `${h.phase}/${h.reason}`),
      ['Resolving/Detected', 'Locating/DigestFromAgent', 'Transferring/SourceSelected'],
    );
    assert.match(d.status?.message ?? '', /is on node-a, node-c; copying from node-a to node-b\. .*technical debt/);
  });

  it('a rescue has one Event, on the record, when it ends: what moved, what happens to the pods, the debt', () => {
    const d = decide(
      at('Transferring'),
      observation({ transfer: transfer({ state: 'succeeded', transferredBytes: 800, transferredBlobs: 3 }) }),
    );
    const events = d.actions.filter((a) => a.type === 'event');
    assert.equal(events.length, 1, JSON.stringify(events));
    const [event] = events;
    assert.ok(event?.type === 'event');
    assert.equal(event.reason, 'Salvaged');
    assert.equal(event.eventType, 'Warning');
    assert.equal(event.onPods, false, 'the pod is being replaced: its Event would go with it');
    assert.match(
      event.message,
      /from node-a to node-b: moved 800B in 3 blobs, .*; deleting app-1 so .* technical debt/,
    );
  });

  it('no Event when the transfer starts: the status says so', () => {
    const d = decide(
      record({ phase: 'Locating', digest }),
      observation({ candidates: [{ node: 'node-a' }], transferSlotFree: true }),
    );
    assert.ok(!d.actions.some((a) => a.type === 'event'), JSON.stringify(d.actions));
  });

  it('a restarted pod leaves status.pods with the Completed write, and its deletion on the way writes nothing', () => {
    const completed = decide(at('Restarting'), observation());
    assert.deepEqual(completed.status?.pods, []);
    assert.deepEqual(completed.status?.restartedPods, [{ name: 'app-1', uid: 'pod-1' }]);
    const again = decide(
      record(completed.status, {}),
      observation({ target: { exists: true, agentAlive: true, image: 'complete' } }),
    );
    assert.equal(again.status, undefined, 'the pod still cached as waiting is the one being replaced');
  });
});

describe('decide: resolution', () => {
  it('uses spec.digest without asking anyone', () => {
    const d = decide(record({ phase: 'Resolving' }, { digest }), observation());
    assert.equal(d.status?.phase, 'Locating');
    assert.equal(d.status?.digest, digest);
    assert.equal(d.status?.conditions?.find((c) => c.type === 'Resolved')?.reason, 'DigestFromSpec');
  });

  it('an unresolvable tag is NotActionable, saying why plainly', () => {
    const d = decide(
      record({ phase: 'Resolving' }),
      observation({
        digest: { kind: 'unresolvable', message: 'tag 1.4 is known to no node and tag resolution is disabled' },
      }),
    );
    assert.equal(d.status?.phase, 'NotActionable');
    assert.match(d.status?.message ?? '', /tag resolution is disabled/);
    assert.ok(types(d.actions).includes('notify'));
  });

  it('a resolution error retries later instead of giving up', () => {
    const d = decide(
      record({ phase: 'Resolving' }),
      observation({ digest: { kind: 'error', message: 'registry timed out' } }),
    );
    assert.equal(d.status?.phase, 'Resolving');
    assert.ok(d.status?.nextRetryAt);
    assert.equal(d.requeueAfterMs, defaultMachineSettings.retryBaseMs);
  });
});

describe('decide: locating', () => {
  const locating = record({ phase: 'Locating', digest });
  it('no holder anywhere → NotActionable', () => {
    const d = decide(locating, observation({ candidates: [] }));
    assert.equal(d.status?.phase, 'NotActionable');
    assert.equal(d.status?.conditions?.find((c) => c.type === 'SourceFound')?.status, 'False');
  });

  it('no holder but an agent down → retry, not NotActionable', () => {
    const d = decide(locating, observation({ candidates: [], unreachableNodes: ['node-c'] }));
    assert.equal(d.status?.phase, 'Locating');
    assert.ok(d.requeueAfterMs !== undefined && d.requeueAfterMs > 0);
  });

  it('DetectOnly → Skipped with a Salvageable event, nothing moved', () => {
    const d = decide(
      locating,
      observation({ policy: policy({ mode: 'DetectOnly' }), candidates: [{ node: 'node-a' }] }),
    );
    assert.equal(d.status?.phase, 'Skipped');
    assert.ok(!types(d.actions).includes('startTransfer'));
    assert.ok(d.actions.some((a) => a.type === 'event' && a.reason === 'Salvageable'));
  });

  it('an image over the size limit → Skipped TooLarge', () => {
    const d = decide(
      locating,
      observation({ policy: policy({ maxImageSizeBytes: 100 }), candidates: [{ node: 'node-a' }], imageBytes: 101 }),
    );
    assert.equal(d.status?.phase, 'Skipped');
    assert.equal(d.status?.history?.at(-1)?.reason, 'TooLarge');
  });

  it('no free transfer slot → waits in Locating', () => {
    const d = decide(locating, observation({ candidates: [{ node: 'node-a' }], transferSlotFree: false }));
    assert.equal(d.status?.phase, 'Locating');
    assert.deepEqual(types(d.actions), []);
    assert.equal(d.requeueAfterMs, 5000);
  });

  it('every holder already serving this image → waits in Locating for one to be free (fan-out as a tree)', () => {
    const busy = [
      { node: 'node-a', serving: 1 },
      { node: 'node-c', serving: 1 },
    ];
    const d = decide(locating, observation({ candidates: busy, transferSlotFree: true }));
    assert.equal(d.status?.phase, 'Locating');
    assert.deepEqual(types(d.actions), []);
    assert.match(d.status?.message ?? '', /waiting for a free source: every node serving .* \(node-a, node-c\)/);
    assert.equal(d.requeueAfterMs, 1000);
  });

  it('a record already waiting writes nothing while the holders grow around it, and starts when one is free', () => {
    const first = decide(
      locating,
      observation({ candidates: [{ node: 'node-a', serving: 1 }], transferSlotFree: true }),
    );
    const waiting = record(first.status, { digest });
    const grown = [
      { node: 'node-a', serving: 1 },
      { node: 'node-c', serving: 1 },
    ];
    const again = decide(waiting, observation({ candidates: grown, transferSlotFree: true }));
    assert.equal(again.status, undefined, JSON.stringify(again.status?.candidates));
    assert.equal(again.requeueAfterMs, 1000);
    const slots = decide(waiting, observation({ candidates: grown, transferSlotFree: false }));
    assert.equal(slots.status, undefined, 'waiting for a slot instead is still waiting');
    const free = decide(waiting, observation({ candidates: [...grown, { node: 'node-d' }], transferSlotFree: true }));
    assert.equal(free.status?.phase, 'Transferring');
    assert.deepEqual(free.status?.candidates, ['node-a', 'node-c', 'node-d']);
    assert.equal(free.status?.sourceNode, 'node-d');
  });

  it('takes the least busy holder: a node that has just received the image serves the next one', () => {
    const candidates = [
      { node: 'node-a', serving: 1 },
      { node: 'node-c', serving: 0 },
    ];
    const d = decide(locating, observation({ candidates, transferSlotFree: true }), {
      ...defaultMachineSettings,
      transfersPerSource: 2,
    });
    assert.equal(d.status?.phase, 'Transferring');
    assert.equal(d.status?.sourceNode, 'node-c');
  });

  it('among equally busy holders, a node that has just received the image serves before the first source', () => {
    const candidates = [
      { node: 'node-a', serving: 0 },
      { node: 'node-c', serving: 0, received: true },
    ];
    const d = decide(locating, observation({ candidates, transferSlotFree: true }));
    assert.equal(d.status?.sourceNode, 'node-c');
  });

  it('once two nodes have received the image, the first source is spared: the received copies serve the rest', () => {
    const candidates = [
      { node: 'node-a', serving: 0 },
      { node: 'node-c', serving: 1, received: true },
      { node: 'node-d', serving: 1, received: true },
    ];
    const d = decide(locating, observation({ candidates, transferSlotFree: true }));
    assert.equal(d.status?.phase, 'Locating', 'node-a is free, yet waiting for node-c or node-d reads it less');
    assert.deepEqual(types(d.actions), []);
    assert.match(d.status?.message ?? '', /every node serving .* \(node-c, node-d\)/);
    const freed = candidates.map((c) => (c.node === 'node-d' ? { ...c, serving: 0 } : c));
    assert.equal(
      decide(locating, observation({ candidates: freed, transferSlotFree: true })).status?.sourceNode,
      'node-d',
    );
  });

  it('with one node received so far, the first source still serves: it seeds the second copy', () => {
    const candidates = [
      { node: 'node-a', serving: 0 },
      { node: 'node-c', serving: 1, received: true },
    ];
    const d = decide(locating, observation({ candidates, transferSlotFree: true }));
    assert.equal(d.status?.sourceNode, 'node-a');
  });

  it('the image already complete on the target → through Restarting to Completed, restarting the pod', () => {
    const d = decide(locating, observation({ target: { exists: true, agentAlive: true, image: 'complete' } }));
    assert.equal(d.status?.phase, 'Completed');
    assert.ok(d.status?.history?.some((h) => h.phase === 'Restarting' && h.reason === 'AlreadyPresent'));
    assert.ok(d.actions.some((a) => a.type === 'deletePod'));
    assert.ok(d.actions.some((a) => a.type === 'event' && a.reason === 'PodRestarted'));
  });

  it('a corrupt image on the target is removed first (CreateContainerError)', () => {
    const d = decide(
      locating,
      observation({
        target: { exists: true, agentAlive: true, image: 'incomplete' },
        candidates: [{ node: 'node-a' }],
        pods: [waitingPod({ missingContent: digest })],
      }),
    );
    assert.deepEqual(types(d.actions), ['removeCorruptImage', 'event', 'notify']);
    assert.equal(d.status?.phase, 'Locating');
  });

  it("an incomplete copy is not removed without the kubelet's proof: the import fills in what is missing", () => {
    const d = decide(
      locating,
      observation({
        target: { exists: true, agentAlive: true, image: 'incomplete' },
        candidates: [{ node: 'node-a' }],
        transferSlotFree: true,
      }),
    );
    assert.ok(!types(d.actions).includes('removeCorruptImage'), 'an ErrImagePull pod proves nothing about the copy');
    assert.ok(types(d.actions).includes('startTransfer'));
  });

  it('a broken copy with no good copy elsewhere is left alone', () => {
    const d = decide(
      locating,
      observation({
        target: { exists: true, agentAlive: true, image: 'incomplete' },
        candidates: [],
        unreachableNodes: [],
        pods: [waitingPod({ missingContent: digest })],
      }),
    );
    assert.ok(!types(d.actions).includes('removeCorruptImage'));
    assert.equal(d.status?.phase, 'NotActionable');
  });

  it('a corrupt image is left alone when the policy says so', () => {
    const d = decide(
      locating,
      observation({
        policy: policy({ cleanCorrupt: false }),
        target: { exists: true, agentAlive: true, image: 'incomplete' },
        candidates: [{ node: 'node-a' }],
        transferSlotFree: true,
      }),
    );
    assert.ok(!types(d.actions).includes('removeCorruptImage'));
  });

  it('a deleted target node → NotActionable', () => {
    const d = decide(locating, observation({ target: { exists: false, agentAlive: false, image: 'unknown' } }));
    assert.equal(d.status?.phase, 'NotActionable');
    assert.match(d.status?.message ?? '', /node node-b does not exist/);
  });

  it('a target node that does not exist → NotActionable while Resolving, before asking anyone for the digest', () => {
    const d = decide(
      record({ phase: 'Resolving' }),
      observation({
        target: { exists: false, agentAlive: false, image: 'unknown' },
        digest: { kind: 'resolved', digest, source: 'registry' },
      }),
    );
    assert.equal(d.status?.phase, 'NotActionable');
    assert.equal(d.status?.history?.at(-1)?.reason, 'TargetNodeGone');
  });

  it('the last copy is announced', () => {
    const d = decide(locating, observation({ candidates: [{ node: 'node-a' }], transferSlotFree: true }));
    assert.ok(d.actions.some((a) => a.type === 'notify' && a.kind === 'LastCopy'));
  });
});

describe('decide: transferring, failures and restarts', () => {
  it('restarts the transfer after a controller restart (nothing tracked in this process)', () => {
    const d = decide(at('Transferring'), observation());
    assert.deepEqual(d.actions, [
      { type: 'startTransfer', source: 'node-a', digest, references: ['registry.example.com/team/app:1.4'] },
    ]);
    assert.equal(d.status, undefined, 'no status write just to restart');
  });

  it('writes progress while bytes move', () => {
    const d = decide(at('Transferring'), observation({ transfer: transfer() }));
    assert.equal(d.status?.progress?.percent, '50%');
    assert.equal(d.status?.progress?.transferredBytes, 300);
    assert.equal(d.requeueAfterMs, defaultMachineSettings.progressIntervalMs);
  });

  it('a failure rotates to the next source and schedules a retry with backoff', () => {
    const d = decide(
      at('Transferring'),
      observation({
        transfer: transfer({
          state: 'failed',
          error: { retryable: true, reason: 'IntegrityError', message: 'digest mismatch' },
        }),
      }),
    );
    assert.equal(d.status?.phase, 'Transferring');
    assert.equal(d.status?.sourceNode, 'node-c');
    assert.equal(d.status?.attempts, 2);
    assert.equal(
      d.status?.nextRetryAt,
      new Date(now.getTime() + retryDelayMs(1, defaultMachineSettings)).toISOString(),
    );
    assert.ok(types(d.actions).includes('forgetTransfer'));
  });

  it('waits out nextRetryAt, then starts again', () => {
    const later = new Date(now.getTime() + 60_000).toISOString();
    const waiting = decide(at('Transferring', { nextRetryAt: later }), observation());
    assert.deepEqual(waiting.actions, []);
    assert.equal(waiting.requeueAfterMs, 60_000);
    const due = decide(at('Transferring', { nextRetryAt: now.toISOString() }), observation());
    assert.deepEqual(types(due.actions), ['startTransfer']);
    assert.equal(due.status?.nextRetryAt, undefined);
  });

  it('a failure that retrying cannot fix → Failed at once', () => {
    const d = decide(
      at('Transferring'),
      observation({
        transfer: transfer({
          state: 'failed',
          error: { retryable: false, reason: 'PlanTooLarge', message: 'plan exceeds 2GiB' },
        }),
      }),
    );
    assert.equal(d.status?.phase, 'Failed');
    assert.equal(d.status?.history?.at(-1)?.reason, 'PlanTooLarge');
  });

  it('waits for the target agent instead of giving up', () => {
    const d = decide(
      record({ phase: 'Locating', digest }),
      observation({ target: { exists: true, agentAlive: false, image: 'unknown' }, candidates: [{ node: 'node-a' }] }),
    );
    assert.equal(d.status?.phase, 'Locating');
    assert.ok(!d.actions.some((a) => a.type === 'startTransfer'));
    assert.ok((d.requeueAfterMs ?? 0) > 0);
  });

  it('gives up after maxAttempts → Failed', () => {
    const d = decide(
      at('Transferring', { attempts: 5 }),
      observation({
        transfer: transfer({
          state: 'failed',
          error: { retryable: true, reason: 'Unavailable', message: 'agent down' },
        }),
      }),
    );
    assert.equal(d.status?.phase, 'Failed');
    assert.match(d.status?.message ?? '', /gave up after 5 attempts/);
  });

  it('backoff doubles and is capped', () => {
    const delays = [1, 2, 3, 10].map((n) => retryDelayMs(n, defaultMachineSettings));
    assert.deepEqual(delays, [10_000, 20_000, 40_000, 300_000]);
  });
});

describe('decide: restart, push and completion', () => {
  it('leaves bare pods alone and says so', () => {
    const d = decide(
      at('Restarting'),
      observation({
        pods: [waitingPod({ name: 'bare', owned: false })],
      }),
    );
    assert.ok(!types(d.actions).includes('deletePod'));
    assert.ok(d.actions.some((a) => a.type === 'event' && a.reason === 'BarePodLeftAlone'));
    assert.equal(d.status?.phase, 'Completed');
  });

  it('words the pod deletion as intent: the status is written before the delete runs', () => {
    const d = decide(at('Restarting'), observation());
    assert.deepEqual(
      d.actions.filter((a) => a.type === 'deletePod'),
      [{ type: 'deletePod', name: 'app-1', uid: 'pod-1' }],
    );
    const said = [d.status?.message ?? '', ...(d.status?.history ?? []).map((h) => h.message ?? '')];
    assert.ok(
      said.some((m) => /deleting app-1 so their controllers recreate them/.test(m)),
      said.join('\n'),
    );
    // A controller killed between this write and the delete must not leave a record claiming the deletion happened.
    assert.ok(!said.some((m) => /\bdeleted app-1\b/.test(m)), said.join('\n'));
  });

  it('does not delete pods when restartPod is off', () => {
    const d = decide(at('Restarting'), observation({ policy: policy({ restartPod: false }) }));
    assert.ok(!types(d.actions).includes('deletePod'));
  });

  const backup = {
    target: 'backup.example.com/tote',
    credentialsSecretRef: undefined,
    caSecretRef: undefined,
    insecure: false,
  };
  it('goes to Pushing when a backup is configured, and starts the push', () => {
    const d = decide(at('Restarting'), observation({ policy: policy({ backup }) }));
    assert.equal(d.status?.phase, 'Pushing');
    const p = decide(at('Pushing'), observation({ policy: policy({ backup }), pods: [] }));
    assert.deepEqual(p.actions, [{ type: 'startPush', digest }]);
  });

  it('Pushing deletes only the pods Restarting recorded (a controller died between its write and its delete)', () => {
    const recorded = { restartedPods: [{ name: 'app-1', uid: 'pod-1' }] };
    const d = decide(at('Pushing', recorded), observation({ policy: policy({ backup }) }));
    assert.deepEqual(
      d.actions.filter((a) => a.type === 'deletePod'),
      [{ type: 'deletePod', name: 'app-1', uid: 'pod-1' }],
    );
    const replacement = decide(
      at('Pushing', recorded),
      observation({ policy: policy({ backup }), pods: [waitingPod({ name: 'app-1', uid: 'pod-2' })] }),
    );
    assert.ok(!types(replacement.actions).includes('deletePod'), 'a replacement pod is never deleted');
    const unrecorded = decide(at('Pushing', { restartedPods: [] }), observation({ policy: policy({ backup }) }));
    assert.ok(!types(unrecorded.actions).includes('deletePod'), 'no pod recorded, none deleted');
  });

  it('Completed never deletes a pod it did not record; one waiting past the kubelet retry is reported once', () => {
    const done = at('Completed', { completedAt: now.toISOString(), restartedPods: [] });
    const complete = { target: { exists: true, agentAlive: true, image: 'complete' as const } };
    const early = decide(done, observation(complete));
    assert.deepEqual(early.actions, [], 'nothing deleted, nothing reported before the kubelet looked again');
    assert.equal(early.status, undefined);
    assert.equal(early.requeueAfterMs, defaultMachineSettings.kubeletRetryMs);

    const later = { ...complete, now: new Date(now.getTime() + defaultMachineSettings.kubeletRetryMs) };
    const report = decide(done, observation(later));
    assert.ok(!types(report.actions).includes('deletePod'));
    assert.deepEqual(types(report.actions).sort(), ['event', 'reportStuck']);
    const condition = report.status?.conditions?.find((c) => c.type === 'PodsStarted');
    assert.equal(condition?.status, 'False');
    assert.equal(condition?.reason, 'StillWaiting');
    assert.match(condition?.message ?? '', /app-1/);
    const again = decide({ ...done, status: report.status }, observation(later));
    assert.deepEqual(again.actions, [], 'reported once, not on every reconcile');
    assert.equal(again.status, undefined);

    const recorded = decide(
      at('Completed', { completedAt: now.toISOString(), restartedPods: [{ name: 'app-1', uid: 'pod-1' }] }),
      observation(complete),
    );
    assert.deepEqual(recorded.actions, [{ type: 'deletePod', name: 'app-1', uid: 'pod-1' }], 'the recorded intent');
    const unknown = decide(done, observation({ target: { exists: true, agentAlive: true, image: 'unknown' } }));
    assert.ok(!types(unknown.actions).includes('deletePod'), 'not when the image is not known to be there');
  });

  it('restarts pods once per record: a reopened record leaves waiting pods to the kubelet', () => {
    const first = decide(at('Restarting'), observation());
    assert.deepEqual(first.status?.restartedPods, [{ name: 'app-1', uid: 'pod-1' }]);
    assert.deepEqual(
      first.actions.filter((a) => a.type === 'deletePod'),
      [{ type: 'deletePod', name: 'app-1', uid: 'pod-1' }],
    );
    const reopened = decide(
      at('Restarting', { restartedPods: [{ name: 'app-1', uid: 'pod-1' }] }),
      observation({ pods: [waitingPod({ name: 'app-1', uid: 'pod-9' })] }),
    );
    assert.ok(!types(reopened.actions).includes('deletePod'), 'no second round');
    assert.match(reopened.status?.message ?? '', /restarted pods once already/);
    assert.equal(reopened.status?.phase, 'Completed');
  });

  it('never deletes a pod that pulls with imagePullPolicy: Always, and says why it stays stuck', () => {
    const d = decide(at('Restarting'), observation({ pods: [waitingPod({ pullsAlways: true })] }));
    assert.ok(!types(d.actions).includes('deletePod'));
    assert.deepEqual(d.status?.restartedPods, []);
    const condition = d.status?.conditions?.find((c) => c.type === 'PodsStarted');
    assert.equal(condition?.reason, 'PullPolicyAlways');
    assert.ok(d.actions.some((a) => a.type === 'reportStuck' && a.reason === 'PullPolicyAlways'));
    assert.match(d.status?.message ?? '', /IfNotPresent/);
    const completed = decide(
      { ...at('Completed'), status: { ...d.status, completedAt: now.toISOString() } },
      observation({
        pods: [waitingPod({ pullsAlways: true })],
        target: { exists: true, agentAlive: true, image: 'complete' },
      }),
    );
    assert.deepEqual(completed.actions, [], 'already reported, nothing deleted');
  });

  it('PodsStarted turns True once no pod waits', () => {
    const d = decide(at('Restarting'), observation({ pods: [waitingPod({ pullsAlways: true })] }));
    const started = decide({ ...at('Completed'), status: d.status }, observation({ pods: [] }));
    assert.equal(started.status?.conditions?.find((c) => c.type === 'PodsStarted')?.status, 'True');
  });

  it('a failed push still completes the salvage, with the failure in status', () => {
    const d = decide(
      at('Pushing'),
      observation({ policy: policy({ backup }), push: { state: 'failed', message: 'registry unavailable' } }),
    );
    assert.equal(d.status?.phase, 'Completed');
    assert.equal(d.status?.backup?.result, 'Failed');
    assert.equal(d.status?.conditions?.find((c) => c.type === 'BackedUp')?.status, 'False');
  });

  it('a successful push records the reference', () => {
    const d = decide(
      at('Pushing'),
      observation({
        policy: policy({ backup }),
        push: { state: 'succeeded', reference: 'backup.example.com/tote/app@' + digest },
      }),
    );
    assert.equal(d.status?.backup?.result, 'Pushed');
    assert.equal(d.status?.phase, 'Completed');
  });

  it('a backup tag held by another image is reported, the image kept by digest', () => {
    const held = `sha256:${'ab'.repeat(32)}`;
    const reference = 'backup.example.com/tote/app@' + digest;
    const d = decide(
      at('Pushing'),
      observation({ policy: policy({ backup }), push: { state: 'succeeded', reference, tagHeldBy: held } }),
    );
    assert.equal(d.status?.backup?.result, 'Pushed');
    assert.equal(d.status?.backup?.reference, reference);
    assert.equal(d.status?.backup?.tag, undefined);
    assert.match(d.status?.backup?.message ?? '', new RegExp(held));
    assert.ok(d.actions.some((a) => a.type === 'event' && a.reason === 'BackupTagConflict'));
  });
});

describe('decide: pods joining, finished records, bounds', () => {
  it('a second pod joins the record and the history says so', () => {
    const d = decide(
      at('Transferring', { pods: [{ name: 'app-1', uid: 'pod-1' }] }),
      observation({
        transfer: transfer(),
        pods: [waitingPod(), waitingPod({ name: 'app-2', uid: 'pod-2' })],
      }),
    );
    assert.deepEqual(
      d.status?.pods?.map((p) => p.name),
      ['app-1', 'app-2'],
    );
    assert.ok(d.status?.history?.some((h) => h.reason === 'PodJoined' && /app-2/.test(h.message ?? '')));
  });

  it('a Completed record stays put while nothing waits', () => {
    const d = decide(
      at('Completed', { completedAt: now.toISOString(), pods: [] }),
      observation({ pods: [], target: { exists: true, agentAlive: true, image: 'complete' } }),
    );
    assert.equal(d.status, undefined);
    assert.deepEqual(d.actions, []);
  });

  it('a Completed record reopens when a pod needs the image again and it is gone', () => {
    const d = decide(at('Completed', { completedAt: now.toISOString(), pods: [] }), observation());
    assert.equal(d.status?.phase, 'Resolving');
    assert.equal(d.status?.attempts, 0);
  });

  it('a Failed record reopens only after the cool-down', () => {
    const recent = decide(at('Failed', { completedAt: now.toISOString(), pods: [] }), observation());
    assert.notEqual(recent.status?.phase, 'Resolving');
    assert.ok((recent.requeueAfterMs ?? 0) > 0);
    const old = new Date(now.getTime() - defaultMachineSettings.reopenAfterMs).toISOString();
    assert.equal(decide(at('Failed', { completedAt: old, pods: [] }), observation()).status?.phase, 'Resolving');
  });

  it('keeps the history bounded, dropping the oldest', () => {
    const history = Array.from({ length: maxHistory }, (_, i) => ({
      time: now.toISOString(),
      phase: 'Locating',
      message: `old ${i}`,
    }));
    const d = decide(
      record({ phase: 'Locating', digest, history }),
      observation({ candidates: [{ node: 'node-a' }], transferSlotFree: true }),
    );
    assert.equal(d.status?.history?.length, maxHistory);
    assert.equal(d.status?.history?.[0]?.message, 'old 1');
  });

  it('never mutates the record it was given', () => {
    const rec = at('Transferring');
    const copy = structuredClone(rec);
    decide(rec, observation({ transfer: transfer({ state: 'failed' }) }));
    assert.deepEqual(rec, copy);
  });

  it('sets observedGeneration', () => {
    const d = decide(record(), observation());
    assert.equal(d.status?.observedGeneration, 1);
  });
});

describe('retryPendingMs: a record backing off waits out its nextRetryAt', () => {
  const at = (ms: number) => new Date(now.getTime() + ms).toISOString();
  it('Resolving and Locating wait until nextRetryAt', () => {
    assert.equal(retryPendingMs(record({ phase: 'Locating', nextRetryAt: at(4_000) }), now), 4_000);
    assert.equal(retryPendingMs(record({ phase: 'Resolving', nextRetryAt: at(1) }), now), 1);
  });
  it('go ahead once it has passed, or without one', () => {
    assert.equal(retryPendingMs(record({ phase: 'Locating', nextRetryAt: at(0) }), now), undefined);
    assert.equal(retryPendingMs(record({ phase: 'Locating', nextRetryAt: at(-5_000) }), now), undefined);
    assert.equal(retryPendingMs(record({ phase: 'Locating' }), now), undefined);
    assert.equal(retryPendingMs(record({ phase: 'Locating', nextRetryAt: 'not a time' }), now), undefined);
  });
  it('other phases handle their own retries', () => {
    for (const phase of ['Pending', 'Transferring', 'Importing', 'Restarting', 'Completed'] as const)
      assert.equal(retryPendingMs(record({ phase, nextRetryAt: at(4_000) }), now), undefined, phase);
  });
});

describe('decide: the names the kubelet looks the image up by', () => {
  const repo = 'registry.example.com/team/app';
  it("a complete copy lacking a pod's reference is not AlreadyPresent: the import adds the names", () => {
    const d = decide(
      at('Locating', { sourceNode: undefined, attempts: 0 }),
      observation({
        target: { exists: true, agentAlive: true, image: 'unnamed' },
        candidates: [{ node: 'node-a' }],
        transferSlotFree: true,
        pods: [waitingPod({ references: [`${repo}@${digest}`] })],
      }),
    );
    assert.equal(d.status?.phase, 'Transferring');
    const start = d.actions.find((a) => a.type === 'startTransfer');
    assert.deepEqual(start, {
      type: 'startTransfer',
      source: 'node-a',
      digest,
      references: ['registry.example.com/team/app:1.4', `${repo}@${digest}`],
    });
  });

  it('a target holding the whole image under other names is its own source', () => {
    const d = decide(
      at('Locating', { sourceNode: undefined, attempts: 0 }),
      observation({
        target: { exists: true, agentAlive: true, image: 'unnamed' },
        candidates: [],
        transferSlotFree: true,
      }),
    );
    assert.equal(d.status?.sourceNode, 'node-b');
    assert.ok(d.actions.some((a) => a.type === 'startTransfer' && a.source === 'node-b'));
  });

  it('a Completed record whose pod waits on a missing name reopens instead of deleting the pod', () => {
    const d = decide(
      at('Completed', { completedAt: now.toISOString(), restartedPods: [] }),
      observation({ target: { exists: true, agentAlive: true, image: 'unnamed' } }),
    );
    assert.equal(d.status?.phase, 'Resolving');
    assert.ok(!types(d.actions).includes('deletePod'));
  });

  it("wantedReferences: the record's reference and every waiting pod's, once each", () => {
    const refs = wantedReferences(at('Locating'), [
      waitingPod({ references: [`${repo}@${digest}`] }),
      waitingPod({ name: 'app-2', uid: 'pod-2', references: [`${repo}:1.4@${digest}`, `${repo}@${digest}`] }),
    ]);
    assert.deepEqual(refs, ['registry.example.com/team/app:1.4', `${repo}@${digest}`, `${repo}:1.4@${digest}`]);
  });
});

describe('decide: a record refused its policy', () => {
  const refused = { reason: 'PolicyNotInScope', message: 'policy other does not select namespace team-a' };
  it('ends NotActionable before any lookup or transfer, whatever its phase', () => {
    for (const phase of ['Pending', 'Resolving', 'Locating', 'Transferring', 'Restarting']) {
      const d = decide(at(phase), observation({ policyRefused: refused }));
      assert.equal(d.status?.phase, 'NotActionable', phase);
      assert.equal(d.status?.conditions?.find((c) => c.type === 'Ready')?.reason, 'PolicyNotInScope');
      assert.ok(!types(d.actions).includes('startTransfer') && !types(d.actions).includes('deletePod'), phase);
    }
  });

  it('leaves a finished record as it is', () => {
    const d = decide(
      at('Completed', { completedAt: now.toISOString(), pods: [] }),
      observation({ policyRefused: refused, pods: [] }),
    );
    assert.equal(d.status, undefined);
  });
});

describe('decide: a protective copy (purpose Protect), no pod waiting', () => {
  const protect = (status?: Parameters<typeof record>[0], reason: 'Endangered' | 'Evacuation' = 'Endangered') => {
    const r = record(status, { purpose: 'Protect', reason, digest, targetNode: 'node-c' });
    delete r.spec.podRef;
    return r;
  };
  const noPods = (overrides: Partial<Parameters<typeof decide>[1]> = {}) => observation({ pods: [], ...overrides });

  it('says why it exists when it starts', () => {
    const d = decide(protect(undefined, 'Evacuation'), noPods());
    assert.equal(d.status?.history?.[0]?.phase, 'Resolving');
    assert.match(
      d.status?.history?.[0]?.message ?? '',
      /protective copy of .* to node-c: a node holding it is leaving the cluster \(Evacuation\)/,
    );
  });

  it('copies from a holder like any rescue', () => {
    const d = decide(
      protect({ phase: 'Locating', digest }),
      noPods({ candidates: [{ node: 'node-a' }], imageBytes: 10, transferSlotFree: true }),
    );
    assert.equal(d.status?.phase, 'Transferring');
    assert.ok(d.actions.some((a) => a.type === 'startTransfer' && a.source === 'node-a'));
  });

  it('restarts no pod and completes saying the target holds the image too', () => {
    const d = decide(protect({ phase: 'Restarting', digest, sourceNode: 'node-a' }), noPods());
    assert.equal(d.status?.phase, 'Completed');
    assert.ok(!d.actions.some((a) => a.type === 'deletePod'));
    assert.match(d.status?.message ?? '', /a protective copy: node-c now holds the image too/);
  });

  it('pushes to the backup registry once copied, when the policy has one', () => {
    const backup = {
      target: 'backup.example.com',
      credentialsSecretRef: undefined,
      caSecretRef: undefined,
      insecure: false,
    };
    const d = decide(protect({ phase: 'Restarting', digest }), noPods({ policy: policy({ backup }) }));
    assert.equal(d.status?.phase, 'Pushing');
  });
});

describe('decide: kstatus conditions for Flux, Argo CD and kubectl wait', () => {
  const conditionsOf = (d: ReturnType<typeof decide>) =>
    Object.fromEntries((d.status?.conditions ?? []).map((c) => [c.type, c]));
  const stalled = {
    type: 'Stalled',
    status: 'True',
    reason: 'Old',
    message: 'old',
    lastTransitionTime: now.toISOString(),
  };
  const reconciling = { ...stalled, type: 'Reconciling' };
  const cases: {
    name: string;
    decision: () => ReturnType<typeof decide>;
    ready: string;
    reconciling: boolean;
    stalled: boolean;
  }[] = [
    {
      name: 'Pending → Resolving',
      decision: () => decide(record(), observation()),
      ready: 'False',
      reconciling: true,
      stalled: false,
    },
    {
      name: 'Locating → Transferring',
      decision: () =>
        decide(
          record({ phase: 'Locating', digest }),
          observation({ candidates: [{ node: 'node-a' }], imageBytes: 1000, transferSlotFree: true }),
        ),
      ready: 'False',
      reconciling: true,
      stalled: false,
    },
    {
      name: 'Restarting → Completed',
      decision: () => decide(at('Restarting', { conditions: [reconciling] }), observation()),
      ready: 'True',
      reconciling: false,
      stalled: false,
    },
    {
      name: 'Transferring → Failed',
      decision: () =>
        decide(
          at('Transferring', { conditions: [reconciling] }),
          observation({
            transfer: transfer({ state: 'failed', error: { retryable: false, reason: 'PlanTooLarge', message: 'no' } }),
          }),
        ),
      ready: 'False',
      reconciling: false,
      stalled: true,
    },
    {
      name: 'Locating → NotActionable',
      decision: () => decide(record({ phase: 'Locating', digest }), observation({ candidates: [] })),
      ready: 'False',
      reconciling: false,
      stalled: true,
    },
    {
      name: 'Locating → Skipped (DetectOnly)',
      decision: () =>
        decide(
          record({ phase: 'Locating', digest }),
          observation({ policy: policy({ mode: 'DetectOnly' }), candidates: [{ node: 'node-a' }] }),
        ),
      ready: 'False',
      reconciling: false,
      stalled: true,
    },
    {
      name: 'a Stalled Failed record reopened → Reconciling again, no longer Stalled',
      decision: () =>
        decide(
          at('Failed', {
            conditions: [stalled],
            completedAt: new Date(now.getTime() - defaultMachineSettings.reopenAfterMs).toISOString(),
            pods: [],
          }),
          observation(),
        ),
      ready: 'False',
      reconciling: true,
      stalled: false,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const conditions = conditionsOf(c.decision());
      assert.equal(conditions.Ready?.status, c.ready);
      assert.equal(conditions.Reconciling?.status, c.reconciling ? 'True' : undefined);
      assert.equal(conditions.Stalled?.status, c.stalled ? 'True' : undefined);
      for (const cond of Object.values(conditions)) assert.equal(cond.observedGeneration, 1, `${cond.type}`);
    });
  }

  it('Reconciling and Stalled carry the reason of the transition', () => {
    const d = decide(record({ phase: 'Locating', digest }), observation({ candidates: [] }));
    assert.equal(conditionsOf(d).Stalled?.reason, conditionsOf(d).Ready?.reason);
    assert.equal(conditionsOf(decide(record(), observation())).Reconciling?.reason, 'Detected');
  });
});
