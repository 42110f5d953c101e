// How long a reconcile waits for the API server, so that its duration splits into the API server's share and the
// controller's own (tote_reconcile_own_duration_seconds). A reconcile runs inside a tally carried through its awaits
// by AsyncLocalStorage; every API request adds its duration to the tally of the reconcile it runs in. Work a reconcile
// starts and leaves running (Events, lookups, transfers) is detached first, so none of it is charged to that reconcile.

import { AsyncLocalStorage } from 'node:async_hooks';

export interface ApiWaitTally {
  seconds: number;
}

const current = new AsyncLocalStorage<ApiWaitTally>();

/** Runs fn with `tally` collecting the API requests it waits for. */
export function tallyApiWait<T>(tally: ApiWaitTally, fn: () => Promise<T>): Promise<T> {
  return current.run(tally, fn);
}

/** Adds one request's duration to the tally it runs under, if any (called by the API client). */
export function chargeApiWait(seconds: number): void {
  const tally = current.getStore();
  if (tally) tally.seconds += seconds;
}

/** Runs fn, and whatever it starts, outside any tally: for background work a reconcile does not wait for. */
export function detachFromApiWait<T>(fn: () => T): T {
  return current.exit(fn);
}
