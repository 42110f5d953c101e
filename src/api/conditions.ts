// Conditions in the metav1.Condition shape. The rule that makes them useful as an API: lastTransitionTime moves only
// when status flips, so "since when is this False" stays true across repeated reconciles.
import type { Condition } from '../../generated/api/v1alpha1.ts';

export type { Condition };
export type ConditionStatus = Condition['status'];

/** What a caller supplies; lastTransitionTime is derived. */
export interface ConditionUpdate {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
}

export const findCondition = (conditions: readonly Condition[] | undefined, type: string): Condition | undefined =>
  conditions?.find((c) => c.type === type);

export const isConditionTrue = (conditions: readonly Condition[] | undefined, type: string): boolean =>
  findCondition(conditions, type)?.status === 'True';

/**
 * Returns a new list with `update` applied: appended when the type is new; replaced in place otherwise, keeping the old
 * lastTransitionTime unless the status changed. The input is never mutated.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  update: ConditionUpdate,
  now: Date,
): Condition[] {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === update.type);
  const previous = index >= 0 ? list[index] : undefined;
  const next: Condition = {
    type: update.type,
    status: update.status,
    reason: update.reason,
    message: truncate(update.message, 32768),
    lastTransitionTime:
      previous !== undefined && previous.status === update.status ? previous.lastTransitionTime : now.toISOString(),
    ...(update.observedGeneration !== undefined ? { observedGeneration: update.observedGeneration } : {}),
  };
  if (index >= 0) list[index] = next;
  else list.push(next);
  return list;
}

/** Removes the condition of the given type, if present. */
export const removeCondition = (conditions: readonly Condition[] | undefined, type: string): Condition[] =>
  (conditions ?? []).filter((c) => c.type !== type);

/** Cuts text to `max` characters, marking the cut, so a long error never makes a status write invalid. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max - 1)}…`;
}
