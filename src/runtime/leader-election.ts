// Leader election on a coordination.k8s.io/v1 Lease, with client-go's algorithm.
//
// Concurrency model. One async loop per elector: as a candidate it tries to acquire every retryPeriod (jittered);
// as leader it renews every retryPeriod and gives leadership up when no renewal succeeds for renewDeadline. Every
// write is a PUT/POST conditional on the Lease's resourceVersion, so two candidates racing for the same expired lease
// cannot both win: the loser gets a 409 and stays a candidate. Expiry is judged on the local clock from the moment
// this process last saw the lease record change (not the holder's renewTime), so clock skew between nodes does not
// matter. On stop() a leader releases the lease (empty holder, 1 s duration) so a standby takes over at once instead
// of waiting out the lease.
//
// A leader renews with the Lease its last write returned, without reading it first: one request per renewal instead
// of two. If anyone changed the Lease meanwhile, the resourceVersion no longer matches, the write gets a 409, and the
// same attempt falls back to reading the Lease and deciding afresh.
//
// Safety margin, as in client-go: renewDeadline < leaseDuration means the leader stops acting (onStoppedLeading, its
// AbortSignal aborts) before any standby may consider the lease expired. Requests of the given KubeClient should time
// out well within renewDeadline.

import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { KubernetesObject } from '@kubernetes/client-node';
import { errorMessage } from '../api/errors.ts';
import { delay, systemClock } from './clock.ts';
import type { Clock } from './clock.ts';
import { isAlreadyExists, isConflict, resources } from './kube.ts';
import type { KubeClient } from './kube.ts';
import { silentLogger } from './logging.ts';
import type { Logger } from './logging.ts';
import type { RuntimeMetrics } from './metrics.ts';

/** The spec of a coordination.k8s.io/v1 Lease. Times are MicroTime strings. */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface Lease extends KubernetesObject {
  spec?: LeaseSpec;
}

export interface LeaderElectorOptions {
  client: KubeClient;
  /** Namespace and name of the Lease. */
  namespace: string;
  name: string;
  /** Unique per process: see leaderIdentity(). */
  identity: string;
  /** How long a lease stays valid after its last renewal, as seen by standbys (default 15 s). */
  leaseDurationMs?: number;
  /** How long the leader retries renewing before it gives up leadership (default 10 s). */
  renewDeadlineMs?: number;
  /** Interval between attempts (default 2 s). */
  retryPeriodMs?: number;
  /** Release the lease on stop() so a standby takes over at once (default true). */
  releaseOnStop?: boolean;
  /** Called when this process becomes leader; signal aborts when it stops being leader. */
  onStartedLeading(signal: AbortSignal): void;
  /** Called when this process stops being leader (lost the lease, or stop()). Not called if it never led. */
  onStoppedLeading(): void;
  /** Called when the observed leader changes (including to this process). */
  onNewLeader?(identity: string): void;
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
  metrics?: RuntimeMetrics;
}

/** "<pod name or host name>_<random>": unique even when a pod restarts under the same name. */
export function leaderIdentity(podName?: string): string {
  return `${podName || hostname()}_${randomBytes(4).toString('hex')}`;
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaderElector {
  readonly identity: string;
  readonly #o: Required<
    Pick<LeaderElectorOptions, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs' | 'releaseOnStop'>
  > &
    LeaderElectorOptions;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;
  #leading = false;
  #leadership: AbortController | undefined;
  #observed: LeaseSpec | undefined;
  #observedAt = 0;
  #lastRenewAt = 0;
  /** The Lease as this process's last successful write left it; renewals write over it without reading. */
  #held: Lease | undefined;
  #leader: string | undefined;

  constructor(options: LeaderElectorOptions) {
    this.#o = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      releaseOnStop: true,
      ...options,
    };
    if (this.#o.renewDeadlineMs >= this.#o.leaseDurationMs)
      throw new Error('leader election: renewDeadline must be shorter than leaseDuration');
    if (this.#o.retryPeriodMs >= this.#o.renewDeadlineMs)
      throw new Error('leader election: retryPeriod must be shorter than renewDeadline');
    this.identity = options.identity;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#log = (options.logger ?? silentLogger).child({
      lease: `${options.namespace}/${options.name}`,
      identity: options.identity,
    });
  }

  /** Starts campaigning (idempotent). The returned promise settles when stop() has finished. */
  start(): Promise<void> {
    this.#running ??= this.#run();
    return this.#running;
  }

  /** Stops campaigning; a leader releases the lease (unless releaseOnStop is false) and gets onStoppedLeading. */
  async stop(): Promise<void> {
    this.#stop.abort(new Error('leader elector stopped'));
    await this.#running;
  }

  isLeader(): boolean {
    return this.#leading;
  }

  /** The identity of the current leader as last observed, if any. */
  get leader(): string | undefined {
    return this.#leader;
  }

  /**
   * False when this process believes it leads but has not renewed for longer than the lease duration plus
   * toleranceMs: the loop is stuck and another replica may already be acting. For a liveness or readiness check.
   */
  healthy(toleranceMs = 0): boolean {
    if (!this.#leading) return true;
    return this.#clock.now() - this.#lastRenewAt <= this.#o.leaseDurationMs + toleranceMs;
  }

  async #sleep(ms: number): Promise<boolean> {
    try {
      await delay(this.#clock, ms, this.#stop.signal);
      return true;
    } catch {
      return false;
    }
  }

  #jittered(ms: number): number {
    return ms * (1 + 0.2 * this.#random());
  }

  async #run(): Promise<void> {
    const stopped = this.#stop.signal;
    while (!stopped.aborted) {
      // Candidate.
      while (!stopped.aborted && !(await this.#tryAcquireOrRenew()))
        await this.#sleep(this.#jittered(this.#o.retryPeriodMs));
      if (stopped.aborted) break;
      this.#becomeLeader();
      // Leader.
      while (!stopped.aborted) {
        if (!(await this.#sleep(this.#o.retryPeriodMs))) break;
        if (!(await this.#renewWithinDeadline())) break;
      }
      if (stopped.aborted) {
        if (this.#o.releaseOnStop) await this.#release();
        this.#stopLeading('stopped');
        break;
      }
      this.#stopLeading('lost');
    }
  }

  async #renewWithinDeadline(): Promise<boolean> {
    const deadline = this.#lastRenewAt + this.#o.renewDeadlineMs;
    while (!this.#stop.signal.aborted) {
      if (await this.#tryAcquireOrRenew()) return true;
      const left = deadline - this.#clock.now();
      if (left <= 0) return false;
      if (!(await this.#sleep(Math.min(this.#o.retryPeriodMs, left)))) return true; // stopping: release next
    }
    return true;
  }

  #becomeLeader(): void {
    this.#leading = true;
    this.#leadership = new AbortController();
    this.#o.metrics?.leaderStatus.set({ name: this.#o.name }, 1);
    this.#log.info('became leader');
    try {
      this.#o.onStartedLeading(this.#leadership.signal);
    } catch (err) {
      this.#log.error('onStartedLeading threw', { error: errorMessage(err) });
    }
  }

  #stopLeading(why: 'lost' | 'stopped'): void {
    if (!this.#leading) return;
    this.#leading = false;
    this.#leadership?.abort(new Error(`leadership ${why}`));
    this.#o.metrics?.leaderStatus.set({ name: this.#o.name }, 0);
    if (why === 'lost') this.#log.warn('lost leadership: could not renew the lease within the renew deadline');
    else this.#log.info('stopped leading');
    try {
      this.#o.onStoppedLeading();
    } catch (err) {
      this.#log.error('onStoppedLeading threw', { error: errorMessage(err) });
    }
  }

  #observe(spec: LeaseSpec): void {
    const o = this.#observed;
    if (
      !o ||
      o.holderIdentity !== spec.holderIdentity ||
      o.renewTime !== spec.renewTime ||
      o.leaseTransitions !== spec.leaseTransitions
    ) {
      this.#observed = { ...spec };
      this.#observedAt = this.#clock.now();
    }
    const holder = spec.holderIdentity || undefined;
    if (holder !== this.#leader) {
      this.#leader = holder;
      if (holder) {
        this.#log.info('new leader observed', { leader: holder });
        try {
          this.#o.onNewLeader?.(holder);
        } catch (err) {
          this.#log.error('onNewLeader threw', { error: errorMessage(err) });
        }
      }
    }
  }

  /** One attempt to take or keep the lease. True when this process holds it afterwards. */
  async #tryAcquireOrRenew(): Promise<boolean> {
    const { client, namespace, name } = this.#o;
    const durationSeconds = Math.max(1, Math.round(this.#o.leaseDurationMs / 1000));
    const now = this.#clock.now();
    const held = this.#held;
    this.#held = undefined;
    if (held && this.#leading) {
      try {
        const spec: LeaseSpec = { ...held.spec, leaseDurationSeconds: durationSeconds, renewTime: microTime(now) };
        const renewed = await client.update<Lease>(resources.leases, { ...held, spec });
        this.#wrote(renewed, spec, now);
        return true;
      } catch (err) {
        if (!isConflict(err)) {
          this.#log.warn('lease renew failed', { error: errorMessage(err) });
          return false;
        }
        this.#log.debug('lease changed since this process wrote it; reading it again', { error: errorMessage(err) });
      }
    }
    try {
      const lease = await client.getOrUndefined<Lease>(resources.leases, name, namespace);
      if (!lease) {
        const spec: LeaseSpec = {
          holderIdentity: this.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: 0,
        };
        const created = await client.create<Lease>(resources.leases, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec,
        });
        this.#wrote(created, spec, now);
        return true;
      }
      const spec = lease.spec ?? {};
      this.#observe(spec);
      const holder = spec.holderIdentity || undefined;
      const durationMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (holder !== undefined && holder !== this.identity && this.#observedAt + durationMs > now) return false;
      const mine = holder === this.identity;
      const next: LeaseSpec = {
        holderIdentity: this.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(now),
        renewTime: microTime(now),
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      };
      const updated = await client.update<Lease>(resources.leases, { ...lease, spec: next });
      this.#wrote(updated, next, now);
      return true;
    } catch (err) {
      // Losing a race (409) is the normal way to lose an election round; anything else is worth a log line.
      if (isConflict(err) || isAlreadyExists(err))
        this.#log.debug('lease changed underneath, retrying', { error: errorMessage(err) });
      else this.#log.warn('lease acquire/renew failed', { error: errorMessage(err) });
      return false;
    }
  }

  /** After a successful write: the Lease as the server now has it is what the next renewal writes over. */
  #wrote(lease: Lease, written: LeaseSpec, now: number): void {
    this.#observe(lease.spec ?? written);
    this.#held = lease;
    this.#lastRenewAt = now;
  }

  async #release(): Promise<void> {
    const { client, namespace, name } = this.#o;
    try {
      const lease = await client.getOrUndefined<Lease>(resources.leases, name, namespace);
      if (!lease || lease.spec?.holderIdentity !== this.identity) return;
      const now = this.#clock.now();
      await client.update<Lease>(resources.leases, {
        ...lease,
        spec: {
          leaseDurationSeconds: 1,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: lease.spec?.leaseTransitions ?? 0,
        },
      });
      this.#log.info('released the lease');
    } catch (err) {
      this.#log.warn('could not release the lease; a standby takes over when it expires', { error: errorMessage(err) });
    }
  }
}
