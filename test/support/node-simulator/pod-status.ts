// Pure: the pod status a kubelet would report, given what happened to each container on the node.
// The simulator decides each container's outcome from the node's real containerd (see simulator.ts); this module only
// shapes the status the way kubelet 1.36 does (conditions, phase, container states, stable timestamps).
import { createHash } from 'node:crypto';
import type { V1Container, V1Pod } from '@kubernetes/client-node';

/** What became of one container on the node. */
export type ContainerOutcome =
  | { state: 'running'; imageID: string }
  /** An init container that ran to completion (the simulator does not run processes: it "ran" once its image was usable). */
  | { state: 'completed'; imageID: string }
  | { state: 'waiting'; reason: string; message?: string };

export interface PodStatusInput {
  pod: V1Pod;
  /** Outcomes by container name; containers without one (e.g. after a failed init container) wait with a default reason. */
  outcomes: ReadonlyMap<string, ContainerOutcome>;
  now: Date;
  hostIP: string;
  podIP: string;
}

/** Status as JSON (times as RFC 3339 strings, second precision as the API server stores them). */
export interface PodStatusJson {
  phase: 'Pending' | 'Running';
  conditions: ConditionJson[];
  hostIP: string;
  hostIPs: { ip: string }[];
  podIP?: string;
  podIPs?: { ip: string }[];
  startTime: string;
  initContainerStatuses?: ContainerStatusJson[];
  containerStatuses: ContainerStatusJson[];
  qosClass?: string;
}

interface ConditionJson {
  type: string;
  status: 'True' | 'False';
  reason?: string;
  message?: string;
  lastProbeTime: null;
  lastTransitionTime: string;
}

interface ContainerStatusJson {
  name: string;
  image: string;
  imageID: string;
  containerID?: string;
  ready: boolean;
  started: boolean;
  restartCount: number;
  state: Record<string, Record<string, unknown>>;
}

/** RFC 3339 at second precision from whatever the client handed us (Date from a list, string from a watch). */
export function rfc3339(t: unknown): string {
  const d = t instanceof Date ? t : new Date(String(t));
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/** A stable fake container id: the simulator runs no processes, but clients expect `containerd://<64 hex>`. */
export function containerID(podUID: string, name: string): string {
  return `containerd://${createHash('sha256').update(`${podUID}/${name}`).digest('hex')}`;
}

const isSidecar = (c: V1Container) => c.restartPolicy === 'Always';

export function podStatusFor(input: PodStatusInput): PodStatusJson {
  const { pod, outcomes, now } = input;
  const prev = pod.status;
  const nowStr = rfc3339(now);
  const uid = pod.metadata?.uid ?? '';

  const previousStatus = (list: unknown, name: string) =>
    (
      list as
        | { name: string; state?: { running?: { startedAt?: unknown }; terminated?: Record<string, unknown> } }[]
        | undefined
    )?.find((s) => s.name === name);

  const statusOf = (c: V1Container, outcome: ContainerOutcome | undefined, init: boolean): ContainerStatusJson => {
    const before = previousStatus(init ? prev?.initContainerStatuses : prev?.containerStatuses, c.name);
    const base = { name: c.name, image: c.image ?? '', restartCount: 0 };
    if (outcome?.state === 'running') {
      const startedAt = before?.state?.running?.startedAt ? rfc3339(before.state.running.startedAt) : nowStr;
      return {
        ...base,
        imageID: outcome.imageID,
        containerID: containerID(uid, c.name),
        ready: true,
        started: true,
        state: { running: { startedAt } },
      };
    }
    if (outcome?.state === 'completed') {
      const t = before?.state?.terminated;
      return {
        ...base,
        imageID: outcome.imageID,
        containerID: containerID(uid, c.name),
        ready: false,
        started: false,
        state: {
          terminated: {
            exitCode: 0,
            reason: 'Completed',
            startedAt: t?.startedAt ? rfc3339(t.startedAt) : nowStr,
            finishedAt: t?.finishedAt ? rfc3339(t.finishedAt) : nowStr,
            containerID: containerID(uid, c.name),
          },
        },
      };
    }
    const waiting: Record<string, unknown> = {
      reason: outcome?.reason ?? (init ? 'PodInitializing' : 'ContainerCreating'),
    };
    if (outcome?.state === 'waiting' && outcome.message) waiting.message = outcome.message;
    return { ...base, imageID: '', ready: false, started: false, state: { waiting } };
  };

  const initContainers = pod.spec?.initContainers ?? [];
  const initStatuses = initContainers.map((c) => statusOf(c, outcomes.get(c.name), true));
  const initDone = initContainers.every((c) => {
    const o = outcomes.get(c.name);
    return o !== undefined && (o.state === 'completed' || (isSidecar(c) && o.state === 'running'));
  });
  const containers = pod.spec?.containers ?? [];
  const mainStatuses = containers.map((c) =>
    statusOf(c, initDone ? outcomes.get(c.name) : { state: 'waiting', reason: 'PodInitializing' }, false),
  );

  const notReady = mainStatuses.filter((s) => !s.ready).map((s) => s.name);
  const notInitialized = initStatuses
    .filter((s, i) => !(s.state.terminated || (initContainers[i] && isSidecar(initContainers[i]) && s.ready)))
    .map((s) => s.name);

  const prevConditions = (prev?.conditions ?? []) as { type: string; status: string; lastTransitionTime?: unknown }[];
  const condition = (type: string, ok: boolean, reason?: string, message?: string): ConditionJson => {
    const before = prevConditions.find((c) => c.type === type);
    const status = ok ? 'True' : 'False';
    const lastTransitionTime =
      before && before.status === status && before.lastTransitionTime ? rfc3339(before.lastTransitionTime) : nowStr;
    return {
      type,
      status,
      ...(ok ? {} : { reason, message }),
      lastProbeTime: null,
      lastTransitionTime,
    };
  };
  const unready = `containers with unready status: [${notReady.join(' ')}]`;
  const conditions = [
    condition('PodReadyToStartContainers', true),
    condition(
      'Initialized',
      notInitialized.length === 0,
      'ContainersNotInitialized',
      `containers with incomplete status: [${notInitialized.join(' ')}]`,
    ),
    condition('Ready', notReady.length === 0, 'ContainersNotReady', unready),
    condition('ContainersReady', notReady.length === 0, 'ContainersNotReady', unready),
  ];
  const scheduled = prevConditions.find((c) => c.type === 'PodScheduled');
  if (scheduled) conditions.push(scheduled as unknown as ConditionJson);

  const status: PodStatusJson = {
    phase: initDone && mainStatuses.every((s) => s.state.running) ? 'Running' : 'Pending',
    conditions,
    hostIP: input.hostIP,
    hostIPs: [{ ip: input.hostIP }],
    podIP: input.podIP,
    podIPs: [{ ip: input.podIP }],
    startTime: prev?.startTime ? rfc3339(prev.startTime) : nowStr,
    containerStatuses: mainStatuses,
  };
  if (initStatuses.length > 0) status.initContainerStatuses = initStatuses;
  if (prev?.qosClass) status.qosClass = prev.qosClass;
  return status;
}

/** The fields of a current status that podStatusFor produces, for an "anything to write?" comparison. */
export function comparableStatus(status: unknown): string {
  const s = JSON.parse(JSON.stringify(status ?? {})) as Record<string, unknown>;
  const normalize = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(normalize);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.entries(v as Record<string, unknown>)
          .filter(([, x]) => x !== undefined && x !== null)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([k, x]) => [k, /Time$|At$/.test(k) && typeof x === 'string' ? rfc3339(x) : normalize(x)]),
      );
    }
    return v;
  };
  const pick = (({ phase, conditions, hostIP, podIP, startTime, initContainerStatuses, containerStatuses }) => ({
    phase,
    conditions,
    hostIP,
    podIP,
    startTime,
    initContainerStatuses,
    containerStatuses,
  }))(s as never);
  return JSON.stringify(normalize(pick));
}
