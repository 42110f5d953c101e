// Kubernetes Events (events.k8s.io/v1) on records and pods: what `kubectl describe` shows a user. A repeated event
// (same object, reason and action within the series window, whatever its note) updates the existing Event's series
// count instead of creating another, as client-go's events.k8s.io recorder keys its series, so a retrying record
// cannot flood the API server. The note stays the first one's (the API server keeps it immutable); the record's status
// history has every message.
// Event writes never fail a reconcile: an Event is a courtesy, the record's status is the truth.
import { randomBytes } from 'node:crypto';
import type { KubernetesObject } from '@kubernetes/client-node';
import { truncate } from '../../api/index.ts';
import { detachFromApiWait } from '../../runtime/api-wait.ts';
import type { Clock } from '../../runtime/clock.ts';
import { ConcurrencyLimiter } from '../../runtime/concurrency-limiter.ts';
import { resources } from '../../runtime/kube.ts';
import type { KubeClient } from '../../runtime/kube.ts';
import type { Logger } from '../../runtime/logging.ts';

export interface EventTarget {
  apiVersion: string;
  kind: string;
  name: string;
  /** Where the Event lives: the object's namespace, or `default` for a cluster-scoped object (as the kubelet does). */
  namespace: string;
  uid: string;
  /** A Node or another cluster-scoped object: the Event regards it without a namespace, as `kubectl describe` looks. */
  clusterScoped?: boolean;
}

export interface EventRecorder {
  record(target: EventTarget, type: 'Normal' | 'Warning', reason: string, note: string, action?: string): Promise<void>;
}

const seriesWindowMs = 10 * 60_000;
const maxTracked = 4096;
const maxQueued = 1000;
/** Sends in flight at once: a burst of incidents shows its Events in seconds, not minutes, without flooding. */
const maxSending = 4;

interface Sent {
  name: string;
  namespace: string;
  count: number;
  firstAt: number;
}

export class KubeEventRecorder implements EventRecorder {
  readonly #kube: KubeClient;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #instance: string;
  /** Recently sent events by (uid, reason, action), oldest first, for series. */
  readonly #sent = new Map<string, Sent>();
  /** The last send queued per series key: a repeat starts only after the Event it counts exists. */
  readonly #lastOfKey = new Map<string, Promise<void>>();
  readonly #sending = new ConcurrencyLimiter(maxSending);
  #queued = 0;

  constructor(kube: KubeClient, options: { clock: Clock; log: Logger; instance: string }) {
    this.#kube = kube;
    this.#clock = options.clock;
    this.#log = options.log;
    this.#instance = options.instance;
  }

  /**
   * Queues the Event and returns a promise of its sending; callers need not wait (reconciles do not: like client-go's
   * recorder, Events go out in the background). Up to `maxSending` go out at once; Events of one series (same
   * object, reason and action) go one after another, so a series update never races the Event it counts. Beyond
   * `maxQueued` waiting sends new Events are dropped (and logged) rather than piling up.
   */
  record(
    target: EventTarget,
    type: 'Normal' | 'Warning',
    reason: string,
    note: string,
    action = 'Salvage',
  ): Promise<void> {
    if (this.#queued >= maxQueued) {
      this.#log.warn('event dropped: too many waiting to be sent', { reason, object: target.name });
      return Promise.resolve();
    }
    this.#queued++;
    const key = seriesKey(target, reason, action);
    // Sent after the reconcile that asked for it has moved on: not part of its API wait.
    const sent = detachFromApiWait(() =>
      (this.#lastOfKey.get(key) ?? Promise.resolve())
        .then(() => this.#sending.run(() => this.#send(key, target, type, reason, note, action)))
        .finally(() => {
          this.#queued--;
          if (this.#lastOfKey.get(key) === sent) this.#lastOfKey.delete(key);
        }),
    );
    this.#lastOfKey.set(key, sent);
    return sent;
  }

  async #send(
    key: string,
    target: EventTarget,
    type: 'Normal' | 'Warning',
    reason: string,
    note: string,
    action: string,
  ): Promise<void> {
    const now = this.#clock.now();
    const previous = this.#sent.get(key);
    try {
      if (previous && now - previous.firstAt < seriesWindowMs) {
        previous.count += 1;
        await this.#kube.mergePatch(resources.events, previous.name, previous.namespace, {
          series: { count: previous.count, lastObservedTime: microTime(now) },
        });
        return;
      }
      const name = `${target.name.slice(0, 200)}.${randomBytes(8).toString('hex')}`;
      const event = {
        apiVersion: 'events.k8s.io/v1',
        kind: 'Event',
        metadata: { name, namespace: target.namespace },
        eventTime: microTime(now),
        reportingController: 'tote.dev/controller',
        reportingInstance: this.#instance.slice(0, 128),
        action,
        reason,
        note: truncate(note, 1024),
        type,
        regarding: {
          apiVersion: target.apiVersion,
          kind: target.kind,
          name: target.name,
          ...(target.clusterScoped ? {} : { namespace: target.namespace }),
          uid: target.uid,
        },
      } as KubernetesObject;
      await this.#kube.create(resources.events, event);
      this.#remember(key, { name, namespace: target.namespace, count: 1, firstAt: now });
    } catch (err) {
      this.#log.warn('could not record event', { reason, object: `${target.namespace}/${target.name}`, err });
    }
  }

  #remember(key: string, sent: Sent): void {
    this.#sent.delete(key);
    this.#sent.set(key, sent);
    if (this.#sent.size > maxTracked) {
      const oldest = this.#sent.keys().next().value;
      if (oldest !== undefined) this.#sent.delete(oldest);
    }
  }
}

/** client-go's key for an events.k8s.io series: regarding, reason and action (one reporting controller here). */
function seriesKey(target: EventTarget, reason: string, action: string): string {
  return `${target.uid}\u0000${reason}\u0000${action}`;
}

/** MicroTime as the API server wants it: RFC 3339 with exactly six fractional digits. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
