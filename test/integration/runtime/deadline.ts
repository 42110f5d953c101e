// Helpers for the runtime integration tests: a promise with a deadline, and a condition re-checked on notification.

/** Rejects with `what` when p does not settle within ms. */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * A condition checked now and again each time notify() is called (e.g. from an informer's event handler), resolving
 * when it holds; no polling, no sleeping.
 */
export class Condition {
  readonly #waiters = new Set<{ check: () => boolean; resolve: () => void }>();

  notify(): void {
    for (const w of [...this.#waiters])
      if (w.check()) {
        this.#waiters.delete(w);
        w.resolve();
      }
  }

  until(check: () => boolean, ms: number, what: string): Promise<void> {
    if (check()) return Promise.resolve();
    const p = new Promise<void>((resolve) => this.#waiters.add({ check, resolve }));
    return withDeadline(p, ms, what);
  }
}
