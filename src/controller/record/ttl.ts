// Which finished records the TTL cleaner deletes. Pure: the cron job lists records and policies and asks this.
import { isFinalPhase } from '../../api/index.ts';
import type { SalvageRecord } from '../../api/index.ts';

export interface ExpiredRecord {
  namespace: string;
  name: string;
  uid: string;
  /** The version this verdict was made on: a record changed since (reopened, say) is not the one to delete. */
  resourceVersion: string;
  ageMs: number;
}

/**
 * Finished records (Completed, Failed, NotActionable, Skipped) whose completedAt is older than their policy's TTL.
 * `ttlFor` returns the TTL of a policy by name (undefined name: no policy; tote's default applies). Records still in
 * progress are never expired, however old.
 */
export function expiredRecords(
  records: readonly SalvageRecord[],
  ttlFor: (policyName: string | undefined) => number,
  now: Date,
): ExpiredRecord[] {
  const expired: ExpiredRecord[] = [];
  for (const record of records) {
    if (!isFinalPhase(record.status?.phase)) continue;
    const finished = Date.parse(record.status?.completedAt ?? '');
    if (Number.isNaN(finished)) continue;
    const ageMs = now.getTime() - finished;
    if (ageMs < ttlFor(record.spec.policyRef?.name)) continue;
    expired.push({
      namespace: record.metadata?.namespace ?? '',
      name: record.metadata?.name ?? '',
      uid: record.metadata?.uid ?? '',
      resourceVersion: record.metadata?.resourceVersion ?? '',
      ageMs,
    });
  }
  return expired;
}
