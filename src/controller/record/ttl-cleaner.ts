// The TTL cleaner: on a cron schedule, and only on the leader, deletes finished SalvageRecords older than their
// policy's recordTTL. Deletion carries the record's UID and resourceVersion as preconditions, so neither a record
// recreated under the same name nor one changed since the cache was read (reopened by a pod needing it again) is
// deleted: the next pass decides on what it is then.
import { CronTime } from 'cron';
import { errorMessage, isToteError, SalvageRecordResource } from '../../api/index.ts';
import type { TimerHandle } from '../../runtime/clock.ts';
import type { ControllerContext } from '../context.ts';
import { defaultPolicy, effectivePolicy } from '../policy/effective-policy.ts';
import { expiredRecords } from './ttl.ts';

/** Runs one pass; returns how many records were deleted. */
export async function pruneExpiredRecords(c: ControllerContext): Promise<number> {
  const ttls = new Map<string, number>();
  for (const policy of c.caches.policies.list()) {
    const name = policy.metadata?.name;
    if (!name) continue;
    try {
      ttls.set(name, effectivePolicy(policy).recordTtlMs);
    } catch (err) {
      // Its records are kept (their TTL is unknown); every other policy's are pruned. The policy says Ready=False.
      ttls.set(name, Number.POSITIVE_INFINITY);
      c.log.warn('policy unreadable; its records are kept this pass', { policy: name, error: errorMessage(err) });
    }
  }
  const ttlFor = (name: string | undefined) => (name ? ttls.get(name) : undefined) ?? defaultPolicy.recordTtlMs;
  let deleted = 0;
  for (const expired of expiredRecords(c.caches.records.list(), ttlFor, new Date(c.clock.now()))) {
    try {
      const preconditions = { uid: expired.uid, resourceVersion: expired.resourceVersion };
      if (await c.kube.delete(SalvageRecordResource, expired.name, expired.namespace, preconditions)) {
        deleted++;
        c.metrics.recordsPruned.inc();
        c.log.info('expired record deleted', {
          record: `${expired.namespace}/${expired.name}`,
          ageHours: Math.round(expired.ageMs / 3_600_000),
        });
      }
    } catch (err) {
      if (isToteError(err, 'conflict')) {
        c.log.info('expired record changed since it was read; the next pass decides', {
          record: `${expired.namespace}/${expired.name}`,
        });
        continue;
      }
      c.log.warn('could not delete expired record', {
        record: `${expired.namespace}/${expired.name}`,
        error: errorMessage(err),
      });
    }
  }
  return deleted;
}

/**
 * Starts the cleaner: a pass at each time the cron expression names, timed by the controller's clock (so tests and
 * the rest of the controller agree on what time it is). Stop it when leadership ends.
 */
export function startTtlCleaner(c: ControllerContext, schedule: string): { stop(): void } {
  const cron = new CronTime(schedule);
  let timer: TimerHandle | undefined;
  let stopped = false;
  const arm = () => {
    if (stopped) return;
    const now = c.clock.now();
    const next = cron.getNextDateFrom(new Date(now)).toMillis();
    timer = c.clock.setTimeout(tick, Math.max(0, next - now));
  };
  const tick = () => {
    arm();
    void pruneExpiredRecords(c).catch((err: unknown) =>
      c.log.error('TTL cleaner pass failed', { error: errorMessage(err) }),
    );
  };
  arm();
  return {
    stop: () => {
      stopped = true;
      if (timer !== undefined) c.clock.clearTimeout(timer);
    },
  };
}
