// `tote migrate records`: gives SalvageRecords written by tote 0.x (spec podName/digest/imageRef/sourceNode/targetNode,
// status phase/completedAt/error) the status this tote reads, in place. Nothing is lost: the CRD keeps the 0.x fields
// (spec.podName, spec.sourceNode, status.error) and the migration leaves them as they are; it adds a final phase, the
// conditions, the source node, the message and one history entry saying what 0.x had written. A 0.x record was made by
// a controller that is gone, so an unfinished one ends Failed: pods still stuck are detected afresh. Idempotent: a
// record whose history holds the migration entry is left alone.
import type { Phase, SalvageRecord, SalvageRecordStatus } from '../../api/index.ts';
import { ConditionTypes, setCondition, truncate } from '../../api/index.ts';

/** The history reason and condition reason of a migrated record. */
export const migratedReason = 'MigratedFromV0';

const completedWords = /^(completed?|succeeded|success|done|salvaged)$/i;
const failedWords = /^(failed|failure|error)$/i;
const digestPattern = /^sha256:[a-f0-9]{64}$/;
const nodePattern = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A record as tote 0.x wrote it: the fields this tote has no place for besides the deprecated ones. */
interface V0Fields {
  spec: { podName?: string; sourceNode?: string };
  status?: { phase?: string; completedAt?: string; error?: string; history?: unknown[] };
}

/** Written by tote 0.x and not migrated yet. */
export function needsMigration(record: SalvageRecord): boolean {
  const v0 = record as SalvageRecord & V0Fields;
  if (record.status?.history?.some((h) => h.reason === migratedReason)) return false;
  const hasV0Fields =
    v0.spec.podName !== undefined || v0.spec.sourceNode !== undefined || v0.status?.error !== undefined;
  // This tote writes a history entry with every phase it sets; a phase without history came from 0.x.
  const phaseWithoutHistory = record.status?.phase !== undefined && record.status.history === undefined;
  return hasV0Fields || phaseWithoutHistory;
}

/** The status a 0.x record gets: 0.x fields kept, this tote's fields added. */
export function migratedStatus(record: SalvageRecord, now: Date): SalvageRecordStatus {
  const v0 = record as SalvageRecord & V0Fields;
  const oldPhase = v0.status?.phase;
  const phase: Phase = oldPhase !== undefined && completedWords.test(oldPhase) ? 'Completed' : 'Failed';
  const error = v0.status?.error;
  const said = `tote 0.x wrote phase ${oldPhase ?? '(none)'}${error ? `, error: ${error}` : ''}`;
  const message = truncate(
    phase === 'Completed'
      ? `salvaged by tote 0.x (${said})`
      : failedWords.test(oldPhase ?? '')
        ? `failed under tote 0.x (${said})`
        : `interrupted by the upgrade from tote 0.x (${said}); pods still stuck are detected again`,
    1024,
  );
  const time = v0.status?.completedAt ?? now.toISOString();
  const generation = record.metadata?.generation;
  const condition = (type: string, status: 'True' | 'False') => ({
    type,
    status,
    reason: migratedReason,
    message,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  });
  let conditions = setCondition(
    record.status?.conditions,
    condition(ConditionTypes.Ready, phase === 'Completed' ? 'True' : 'False'),
    now,
  );
  if (phase !== 'Completed') conditions = setCondition(conditions, condition(ConditionTypes.Stalled, 'True'), now);
  const digest = record.spec.digest ?? record.status?.digest;
  const source = v0.spec.sourceNode;
  return {
    ...record.status,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
    phase,
    message,
    completedAt: time,
    ...(digest !== undefined && digestPattern.test(digest) ? { digest } : {}),
    ...(source !== undefined && nodePattern.test(source) && source.length <= 253 ? { sourceNode: source } : {}),
    conditions,
    history: [...(record.status?.history ?? []), { time, phase, reason: migratedReason, message }],
  };
}
