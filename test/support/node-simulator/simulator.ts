// The node simulator: plays the kubelet's part for every simulated node of the local test cluster, deciding from each
// node's REAL containerd (over CRI, and containerd's content store for blob presence) — nothing is scripted per test.
//
// Concurrency model: one process, one event loop. A pod informer (list + watch, restarted on error) enqueues pod keys
// when a pod's spec or deletion state changes; a de-duplicating queue runs at most one sync per key at a time (a key
// enqueued during its own sync runs once more afterwards). A sync reads the pod from the informer cache, asks the
// node's containerd, and writes the status only when it differs. Pods with a waiting container are re-synced every
// `resyncMs` (the kubelet's pod worker retries the same way). Image pulls are serialised per node, like the kubelet's
// default serializeImagePulls=true. Per node, two timers keep the Node status (images, conditions) and the Lease fresh.
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import {
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  ListWatch,
  PatchStrategy,
  V1MicroTime,
  Watch,
  setHeaderOptions,
} from '@kubernetes/client-node';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import { PullBackoff } from './backoff.ts';
import { BlobChecker } from './blobs.ts';
import { CriClient, criErrorMessage } from './cri.ts';
import type { Image } from '../../../generated/proto/cri/runtime/v1/api.ts';
import { comparableStatus, podStatusFor, rfc3339 } from './pod-status.ts';
import type { ContainerOutcome } from './pod-status.ts';

export interface SimulatorOptions {
  kubeconfig: string;
  nodes: { name: string; socket: string }[];
  pullBackoffInitialMs: number;
  pullBackoffMaxMs: number;
  /** How soon a pod with a waiting container is looked at again. */
  resyncMs: number;
  /** How often Node.status (images, conditions) is refreshed from containerd. */
  nodeStatusMs: number;
  /** Lease renewal period (the kubelet renews every 10 s a 40 s lease). */
  leaseRenewMs: number;
  kubeletVersion: string;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** The kubelet reports at most this many images in Node.status.images, each with at most 5 names. */
const maxImagesInNodeStatus = 50;
const maxNamesPerImage = 5;
const leaseDurationSeconds = 40;
/** The kubelet rewrites an unchanged Node status at least this often (nodeStatusReportFrequency). */
const nodeStatusReportMs = 5 * 60_000;

interface SimNode {
  name: string;
  index: number;
  cri: CriClient;
  blobs: BlobChecker;
  pulls: Promise<unknown>;
  runtimeVersion: string;
  lastStatusJson: string;
  lastStatusWrite: number;
  timers: NodeJS.Timeout[];
}

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

function httpCode(err: unknown): number | undefined {
  const e = err as { code?: unknown; statusCode?: unknown };
  return typeof e.code === 'number' ? e.code : typeof e.statusCode === 'number' ? e.statusCode : undefined;
}

/** Image reference with the default tag the kubelet applies (`foo` → `foo:latest`). */
export function withDefaultTag(image: string): string {
  if (image.includes('@')) return image;
  const lastSlash = image.lastIndexOf('/');
  return image.slice(lastSlash + 1).includes(':') ? image : `${image}:latest`;
}

/** The pull policy the API server defaults to when a container names none. */
export function pullPolicyOf(c: V1Container): string {
  if (c.imagePullPolicy) return c.imagePullPolicy;
  const ref = c.image ?? '';
  if (ref.includes('@')) return 'IfNotPresent';
  return withDefaultTag(ref).endsWith(':latest') ? 'Always' : 'IfNotPresent';
}

export class NodeSimulator {
  readonly #o: SimulatorOptions;
  readonly #core: CoreV1Api;
  readonly #coordination: CoordinationV1Api;
  readonly #nodes = new Map<string, SimNode>();
  readonly #backoff: PullBackoff;
  readonly #informer: ListWatch<V1Pod>;
  /** Last seen "spec + deletion" fingerprint per pod key: our own status writes do not re-trigger a sync. */
  readonly #seen = new Map<string, string>();
  readonly #queued = new Set<string>();
  readonly #running = new Set<string>();
  readonly #again = new Set<string>();
  readonly #delayed = new Map<string, NodeJS.Timeout>();
  #stopped = false;

  constructor(options: SimulatorOptions) {
    this.#o = options;
    const kc = new KubeConfig();
    kc.loadFromFile(options.kubeconfig);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#coordination = kc.makeApiClient(CoordinationV1Api);
    this.#backoff = new PullBackoff(options.pullBackoffInitialMs, options.pullBackoffMaxMs);
    options.nodes.forEach((n, index) => {
      this.#nodes.set(n.name, {
        name: n.name,
        index,
        cri: new CriClient(n.socket),
        blobs: new BlobChecker(n.socket),
        pulls: Promise.resolve(),
        runtimeVersion: 'containerd://unknown',
        lastStatusJson: '',
        lastStatusWrite: 0,
        timers: [],
      });
    });
    const fieldSelector = 'spec.nodeName!=';
    this.#informer = new ListWatch<V1Pod>(
      '/api/v1/pods',
      new Watch(kc),
      () => this.#core.listPodForAllNamespaces({ fieldSelector }),
      false,
      undefined,
      fieldSelector,
    );
  }

  async start(): Promise<void> {
    for (const node of this.#nodes.values()) {
      const v = await node.cri.version();
      node.runtimeVersion = `${v.runtimeName}://${v.runtimeVersion}`;
      await this.#ensureNode(node);
      await this.#renewLease(node);
      await this.#updateNodeStatus(node);
      node.timers.push(setInterval(() => void this.#renewLease(node), this.#o.leaseRenewMs));
      node.timers.push(setInterval(() => void this.#updateNodeStatus(node), this.#o.nodeStatusMs));
    }
    const onPod = (pod: V1Pod) => {
      const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
      const fingerprint = JSON.stringify([pod.metadata?.uid, pod.spec, pod.metadata?.deletionTimestamp ?? null]);
      if (this.#seen.get(key) === fingerprint) return;
      this.#seen.set(key, fingerprint);
      this.#enqueue(key);
    };
    this.#informer.on('add', onPod);
    this.#informer.on('update', onPod);
    this.#informer.on('delete', (pod) => {
      const key = `${pod.metadata?.namespace}/${pod.metadata?.name}`;
      this.#seen.delete(key);
      if (pod.metadata?.uid) this.#backoff.forgetPod(pod.metadata.uid);
    });
    this.#informer.on('error', (err) => {
      if (this.#stopped) return;
      this.#o.log('pod watch failed; restarting', { error: String(err) });
      setTimeout(() => void this.#informer.start().catch(() => undefined), 1_000);
    });
    await this.#informer.start();
    this.#o.log('node simulator started', { nodes: [...this.#nodes.keys()] });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#informer.stop();
    for (const t of this.#delayed.values()) clearTimeout(t);
    for (const node of this.#nodes.values()) {
      node.timers.forEach(clearInterval);
      node.cri.close();
      node.blobs.close();
    }
  }

  // --- queue ---------------------------------------------------------------------------------------------------------

  #enqueue(key: string, delayMs = 0): void {
    if (this.#stopped) return;
    if (delayMs > 0) {
      if (this.#delayed.has(key)) return;
      this.#delayed.set(
        key,
        setTimeout(() => {
          this.#delayed.delete(key);
          this.#enqueue(key);
        }, delayMs),
      );
      return;
    }
    if (this.#running.has(key)) {
      this.#again.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    queueMicrotask(() => void this.#run(key));
  }

  async #run(key: string): Promise<void> {
    this.#queued.delete(key);
    this.#running.add(key);
    let retryMs: number | undefined;
    try {
      retryMs = await this.#sync(key);
    } catch (err) {
      this.#o.log('pod sync failed', { pod: key, error: String(err) });
      retryMs = 1_000;
    } finally {
      this.#running.delete(key);
    }
    if (this.#again.delete(key)) this.#enqueue(key);
    else if (retryMs !== undefined) this.#enqueue(key, retryMs);
  }

  // --- pods ----------------------------------------------------------------------------------------------------------

  /** Converges one pod; returns when to look again (undefined: only on the next change). */
  async #sync(key: string): Promise<number | undefined> {
    const [namespace = '', name = ''] = key.split('/');
    const pod = this.#informer.get(name, namespace);
    const node = pod?.spec?.nodeName ? this.#nodes.get(pod.spec.nodeName) : undefined;
    if (!pod || !node) return undefined;
    const uid = pod.metadata?.uid ?? '';

    if (pod.metadata?.deletionTimestamp) {
      // The kubelet stops the containers, then deletes the pod for good.
      try {
        await this.#core.deleteNamespacedPod({
          name,
          namespace,
          gracePeriodSeconds: 0,
          body: { preconditions: { uid }, gracePeriodSeconds: 0 },
        });
      } catch (err) {
        if (httpCode(err) !== 404 && httpCode(err) !== 409) throw err;
      }
      this.#backoff.forgetPod(uid);
      return undefined;
    }
    if (pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed') return undefined;

    const hostIP = '127.0.0.1';
    const podIP = `10.244.${node.index}.${((createHash('sha256').update(uid).digest()[0] ?? 0) % 250) + 2}`;
    if (!pod.status?.containerStatuses) {
      // First sight: the kubelet reports the pod as being set up before it pulls anything.
      await this.#writeStatus(pod, podStatusFor({ pod, outcomes: new Map(), now: new Date(), hostIP, podIP }));
    }

    const outcomes = new Map<string, ContainerOutcome>();
    let initDone = true;
    for (const c of pod.spec?.initContainers ?? []) {
      const o = await this.#containerOutcome(node, pod, c, true);
      outcomes.set(c.name, o);
      const ok = o.state === 'completed' || (c.restartPolicy === 'Always' && o.state === 'running');
      if (!ok) {
        initDone = false;
        break;
      }
    }
    if (initDone) {
      for (const c of pod.spec?.containers ?? [])
        outcomes.set(c.name, await this.#containerOutcome(node, pod, c, false));
    }
    const latest = this.#informer.get(name, namespace) ?? pod;
    if (latest.metadata?.uid !== uid || latest.metadata?.deletionTimestamp) return 0;
    await this.#writeStatus(latest, podStatusFor({ pod: latest, outcomes, now: new Date(), hostIP, podIP }));
    const waiting = [...outcomes.values()].some((o) => o.state === 'waiting') || !initDone;
    return waiting ? this.#o.resyncMs : undefined;
  }

  async #writeStatus(pod: V1Pod, status: ReturnType<typeof podStatusFor>): Promise<void> {
    if (comparableStatus(pod.status) === comparableStatus(status)) return;
    const name = pod.metadata?.name ?? '';
    const namespace = pod.metadata?.namespace ?? '';
    // Like the kubelet's status manager: a patch guarded by the pod's UID, no resourceVersion (we own this status).
    await this.#core.patchNamespacedPodStatus(
      { name, namespace, body: { metadata: { uid: pod.metadata?.uid }, status } },
      mergePatch,
    );
    pod.status = status as never; // so the next comparison in this sync sees what we wrote
  }

  /** Decides one container from what the node's containerd holds, pulling through CRI like the kubelet. */
  async #containerOutcome(node: SimNode, pod: V1Pod, c: V1Container, init: boolean): Promise<ContainerOutcome> {
    // A container that already started keeps running: the kubelet does not re-check images of live containers.
    const before = (init ? pod.status?.initContainerStatuses : pod.status?.containerStatuses)?.find(
      (s) => s.name === c.name,
    );
    if (before?.imageID && before.state?.running && !init) return { state: 'running', imageID: before.imageID };
    if (before?.imageID && before.state?.terminated?.exitCode === 0 && init) {
      return { state: 'completed', imageID: before.imageID };
    }
    if (before?.imageID && before.state?.running && init) return { state: 'running', imageID: before.imageID };

    const image = c.image ?? '';
    if (!image)
      return {
        state: 'waiting',
        reason: 'InvalidImageName',
        message: 'Failed to apply default image tag "": couldn\'t parse image name "": invalid reference format',
      };
    const ref = withDefaultTag(image);
    const policy = pullPolicyOf(c);
    const ran = (imageID: string): ContainerOutcome =>
      init && c.restartPolicy !== 'Always' ? { state: 'completed', imageID } : { state: 'running', imageID };

    let present: Image | undefined;
    try {
      present = await node.cri.imageStatus(ref);
    } catch (err) {
      return {
        state: 'waiting',
        reason: 'ImageInspectError',
        message: `Failed to inspect image "${ref}": ${criErrorMessage(err)}`,
      };
    }
    if (!present && policy === 'Never') {
      const message = `Container image "${image}" is not present with pull policy of Never`;
      this.#event(pod, 'Warning', 'ErrImageNeverPull', message, c);
      return { state: 'waiting', reason: 'ErrImageNeverPull', message };
    }
    if (!present || policy === 'Always') {
      const key = `${pod.metadata?.uid}_${ref}`;
      const now = Date.now();
      if (this.#backoff.inBackoff(key, now)) {
        const last = this.#backoff.lastError(key);
        const message = `Back-off pulling image "${ref}"` + (last ? `: ${last}` : '');
        if (before?.state?.waiting?.reason !== 'ImagePullBackOff') {
          this.#event(pod, 'Normal', 'BackOff', `Back-off pulling image "${ref}"`, c);
        }
        return { state: 'waiting', reason: 'ImagePullBackOff', message };
      }
      this.#event(pod, 'Normal', 'Pulling', `Pulling image "${ref}"`, c);
      const started = Date.now();
      try {
        await this.#serialPull(node, ref, pod);
      } catch (err) {
        const msg = criErrorMessage(err);
        this.#backoff.failed(key, Date.now(), `ErrImagePull: ${msg}`);
        this.#event(pod, 'Warning', 'Failed', `Failed to pull image "${ref}": ${msg}`, c);
        this.#event(pod, 'Warning', 'Failed', 'Error: ErrImagePull', c);
        void this.#updateNodeStatus(node);
        return { state: 'waiting', reason: 'ErrImagePull', message: msg };
      }
      present = await node.cri.imageStatus(ref);
      this.#event(
        pod,
        'Normal',
        'Pulled',
        `Successfully pulled image "${ref}" in ${Date.now() - started}ms. Image size: ${present?.size ?? 0} bytes.`,
        c,
      );
      void this.#updateNodeStatus(node);
      if (!present)
        return { state: 'waiting', reason: 'ErrImagePull', message: `image "${ref}" vanished after its pull` };
    } else if (before?.state?.waiting?.reason !== 'CreateContainerError') {
      this.#event(pod, 'Normal', 'Pulled', `Container image "${image}" already present on machine`, c);
    }

    // Creating the container reads the image's config and layers from the content store; a missing blob fails it.
    const broken = await node.blobs.createContainerError(present);
    if (broken) {
      this.#event(pod, 'Warning', 'Failed', `Error: ${broken}`, c);
      return { state: 'waiting', reason: 'CreateContainerError', message: broken };
    }
    if (!before?.state?.running) {
      this.#event(pod, 'Normal', 'Created', `Created container: ${c.name}`, c);
      this.#event(pod, 'Normal', 'Started', `Started container ${c.name}`, c);
    }
    return ran(present.repoDigests[0] ?? present.id);
  }

  #serialPull(node: SimNode, ref: string, pod: V1Pod): Promise<string> {
    const run = node.pulls.then(() =>
      node.cri.pullImage(ref, {
        metadata: {
          name: pod.metadata?.name ?? '',
          namespace: pod.metadata?.namespace ?? '',
          uid: pod.metadata?.uid ?? '',
          attempt: 0,
        },
        labels: {},
        annotations: {},
      }),
    );
    node.pulls = run.catch(() => undefined);
    return run;
  }

  #event(pod: V1Pod, type: 'Normal' | 'Warning', reason: string, message: string, c: V1Container): void {
    const namespace = pod.metadata?.namespace ?? 'default';
    const now = new Date();
    const init = (pod.spec?.initContainers ?? []).some((i) => i.name === c.name);
    this.#core
      .createNamespacedEvent({
        namespace,
        body: {
          metadata: { generateName: `${pod.metadata?.name}.`, namespace },
          involvedObject: {
            apiVersion: 'v1',
            kind: 'Pod',
            name: pod.metadata?.name,
            namespace,
            uid: pod.metadata?.uid,
            fieldPath: `spec.${init ? 'initContainers' : 'containers'}{${c.name}}`,
          },
          type,
          reason,
          message,
          source: { component: 'kubelet', host: pod.spec?.nodeName },
          reportingComponent: 'kubelet',
          reportingInstance: pod.spec?.nodeName,
          firstTimestamp: now,
          lastTimestamp: now,
          count: 1,
        },
      })
      .catch((err: unknown) => this.#o.log('event not recorded', { error: String(err) }));
  }

  // --- nodes ---------------------------------------------------------------------------------------------------------

  async #ensureNode(node: SimNode): Promise<void> {
    try {
      await this.#core.readNode({ name: node.name });
      return;
    } catch (err) {
      if (httpCode(err) !== 404) throw err;
    }
    await this.#core.createNode({
      body: {
        metadata: {
          name: node.name,
          labels: {
            'kubernetes.io/hostname': node.name,
            'kubernetes.io/os': 'linux',
            'kubernetes.io/arch': 'amd64',
            'beta.kubernetes.io/os': 'linux',
            'beta.kubernetes.io/arch': 'amd64',
            'tote.dev/simulated-node': 'true',
          },
          annotations: { 'tote.dev/containerd-socket': node.cri.socket },
        },
        spec: {},
      },
    });
  }

  async #renewLease(node: SimNode): Promise<void> {
    const namespace = 'kube-node-lease';
    const renewTime = new V1MicroTime();
    try {
      try {
        const lease = await this.#coordination.readNamespacedLease({ name: node.name, namespace });
        lease.spec = { ...lease.spec, holderIdentity: node.name, leaseDurationSeconds, renewTime };
        await this.#coordination.replaceNamespacedLease({ name: node.name, namespace, body: lease });
      } catch (err) {
        if (httpCode(err) !== 404) throw err;
        const owner = await this.#core.readNode({ name: node.name });
        await this.#coordination.createNamespacedLease({
          namespace,
          body: {
            metadata: {
              name: node.name,
              namespace,
              ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: node.name, uid: owner.metadata?.uid ?? '' }],
            },
            spec: { holderIdentity: node.name, leaseDurationSeconds, renewTime },
          },
        });
      }
    } catch (err) {
      this.#o.log('lease renewal failed', { node: node.name, error: String(err) });
    }
  }

  /** Rewrites Node.status from the node's containerd when it changed (or every 5 minutes, as a heartbeat). */
  async #updateNodeStatus(node: SimNode): Promise<void> {
    try {
      const images = (await node.cri.listImages())
        .map((i) => ({ names: [...i.repoDigests, ...i.repoTags].slice(0, maxNamesPerImage), sizeBytes: i.size }))
        .sort((a, b) => b.sizeBytes - a.sizeBytes)
        .slice(0, maxImagesInNodeStatus);
      const resources = { cpu: '8', memory: '32Gi', pods: '110', 'ephemeral-storage': '100Gi' };
      const condition = (type: string, status: string, reason: string, message: string) => ({
        type,
        status,
        reason,
        message,
      });
      const body = {
        capacity: resources,
        allocatable: resources,
        conditions: [
          condition('MemoryPressure', 'False', 'KubeletHasSufficientMemory', 'kubelet has sufficient memory available'),
          condition('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
          condition('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
          condition('Ready', 'True', 'KubeletReady', 'kubelet is posting ready status (tote node simulator)'),
        ],
        addresses: [
          { type: 'InternalIP', address: '127.0.0.1' },
          { type: 'Hostname', address: node.name },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
        nodeInfo: {
          machineID: createHash('md5').update(`${hostname()}/${node.name}`).digest('hex'),
          systemUUID: createHash('md5').update(`uuid/${node.name}`).digest('hex'),
          bootID: createHash('md5').update(`boot/${node.name}/${process.pid}`).digest('hex'),
          kernelVersion: 'simulated',
          osImage: 'tote node simulator',
          containerRuntimeVersion: node.runtimeVersion,
          kubeletVersion: this.#o.kubeletVersion,
          kubeProxyVersion: '',
          operatingSystem: 'linux',
          architecture: 'amd64',
        },
        images,
      };
      const json = JSON.stringify(body);
      const now = Date.now();
      if (json === node.lastStatusJson && now - node.lastStatusWrite < nodeStatusReportMs) return;
      const stamp = rfc3339(new Date(now));
      const previous = await this.#core.readNodeStatus({ name: node.name });
      const conditions = body.conditions.map((c) => {
        const before = previous.status?.conditions?.find((p) => p.type === c.type);
        const lastTransitionTime = before && before.status === c.status ? rfc3339(before.lastTransitionTime) : stamp;
        return { ...c, lastHeartbeatTime: stamp, lastTransitionTime };
      });
      await this.#core.patchNodeStatus({ name: node.name, body: { status: { ...body, conditions } } }, mergePatch);
      node.lastStatusJson = json;
      node.lastStatusWrite = now;
    } catch (err) {
      this.#o.log('node status update failed', { node: node.name, error: String(err) });
    }
  }
}
