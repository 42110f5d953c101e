// The kubelet's image pull back-off (k8s.io/client-go/util/flowcontrol.Backoff as the image manager uses it):
// per (pod UID, image) key, the first failure backs off `initial`, each further one doubles it up to `max`; a key
// untouched for 2×max starts over. The last pull error is kept for the "Back-off pulling image" message.

export class PullBackoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #entries = new Map<string, { durationMs: number; lastUpdate: number; lastError: string }>();

  constructor(initialMs: number, maxMs: number) {
    this.#initialMs = initialMs;
    this.#maxMs = maxMs;
  }

  /** True while `now` is within the back-off window that started at the key's last failure. */
  inBackoff(key: string, now: number): boolean {
    const e = this.#entries.get(key);
    return e !== undefined && now - e.lastUpdate < e.durationMs;
  }

  /** When the current window ends (for scheduling the next attempt), or undefined. */
  until(key: string): number | undefined {
    const e = this.#entries.get(key);
    return e && e.lastUpdate + e.durationMs;
  }

  lastError(key: string): string | undefined {
    return this.#entries.get(key)?.lastError;
  }

  /** Records a failed pull: starts or doubles the window. */
  failed(key: string, now: number, error: string): void {
    const e = this.#entries.get(key);
    const durationMs =
      e === undefined || now - e.lastUpdate > 2 * this.#maxMs
        ? this.#initialMs
        : Math.min(e.durationMs * 2, this.#maxMs);
    this.#entries.set(key, { durationMs, lastUpdate: now, lastError: error });
  }

  /** Forgets every key of a pod (the pod is gone). */
  forgetPod(podUID: string): void {
    for (const key of this.#entries.keys()) if (key.startsWith(`${podUID}_`)) this.#entries.delete(key);
  }
}
