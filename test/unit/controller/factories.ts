// Factories for controller unit tests: realistic objects with overrides, so each test states only what it is about.
import type { V1Pod } from '@kubernetes/client-node';
import type { SalvagePolicy, SalvageRecord, SalvageRecordStatus } from '../../../src/api/index.ts';
import { defaultPolicy } from '../../../src/controller/policy/effective-policy.ts';
import type { EffectivePolicy } from '../../../src/controller/policy/effective-policy.ts';
import type { RecordObservation, WaitingPod } from '../../../src/controller/record/record-machine.ts';

export const digest = `sha256:${'5b0bcabd'.repeat(8)}`;
export const now = new Date('2026-11-22T10:00:00Z');

export function record(status?: SalvageRecordStatus, spec: Partial<SalvageRecord['spec']> = {}): SalvageRecord {
  return {
    apiVersion: 'tote.dev/v1alpha1',
    kind: 'SalvageRecord',
    metadata: { name: 'r', namespace: 'team', uid: 'rec-uid', generation: 1, resourceVersion: '1' },
    spec: {
      imageRef: 'registry.example.com/team/app:1.4',
      targetNode: 'node-b',
      reason: 'ErrImagePull',
      podRef: { name: 'app-1', uid: 'pod-1' },
      ...spec,
    },
    ...(status ? { status } : {}),
  };
}

export function policy(overrides: Partial<EffectivePolicy> = {}): EffectivePolicy {
  return { ...defaultPolicy, name: 'p', uid: 'pol-uid', ...overrides };
}

export function waitingPod(overrides: Partial<WaitingPod> = {}): WaitingPod {
  return {
    name: 'app-1',
    uid: 'pod-1',
    owned: true,
    references: ['registry.example.com/team/app:1.4'],
    pullsAlways: false,
    ...overrides,
  };
}

export function observation(overrides: Partial<RecordObservation> = {}): RecordObservation {
  return {
    now,
    policy: policy(),
    target: { exists: true, agentAlive: true, platform: 'linux/amd64', image: 'absent' },
    pods: [waitingPod()],
    ...overrides,
  };
}

export function pod(
  overrides: {
    name?: string;
    namespace?: string;
    image?: string;
    waiting?: { reason: string; message?: string };
    init?: boolean;
    owner?: boolean;
    deleting?: boolean;
    imageID?: string;
  } = {},
): V1Pod {
  const name = overrides.name ?? 'app-1';
  const image = overrides.image ?? 'registry.example.com/team/app:1.4';
  const status = {
    name: 'app',
    image,
    imageID: overrides.imageID ?? '',
    ready: false,
    restartCount: 0,
    ...(overrides.waiting ? { state: { waiting: overrides.waiting } } : { state: { running: {} } }),
  };
  return {
    metadata: {
      name,
      namespace: overrides.namespace ?? 'team',
      uid: `${name}-uid`,
      ...(overrides.owner === false
        ? {}
        : {
            ownerReferences: [
              { apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'app-rs', uid: 'rs-uid', controller: true },
            ],
          }),
      ...(overrides.deleting ? { deletionTimestamp: now } : {}),
    },
    spec: overrides.init
      ? {
          nodeName: 'node-b',
          initContainers: [{ name: 'app', image }],
          containers: [{ name: 'main', image: 'busybox' }],
        }
      : { nodeName: 'node-b', containers: [{ name: 'app', image, imagePullPolicy: 'IfNotPresent' }] },
    status: overrides.init ? { initContainerStatuses: [status] } : { containerStatuses: [status] },
  };
}

export function salvagePolicy(name: string, spec: SalvagePolicy['spec'] = {}): SalvagePolicy {
  return { apiVersion: 'tote.dev/v1alpha1', kind: 'SalvagePolicy', metadata: { name, uid: `${name}-uid` }, spec };
}
