// A bound on how many async tasks run at once, for callers that start work faster than it should go out (agent
// queries, Events). Concurrency: event-loop only; waiting tasks start in the order they came.

/** Runs at most `max` tasks at once; the others start in the order they came as slots free up. */
export class ConcurrencyLimiter {
  readonly #max: number;
  readonly #queue: (() => void)[] = [];
  #running = 0;

  constructor(max: number) {
    this.#max = Math.max(1, max);
  }

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    return this.#queue.length;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const start = () => {
        this.#running++;
        const finish = () => {
          this.#running--;
          this.#queue.shift()?.();
        };
        new Promise<T>((r) => r(task())).then(
          (value) => {
            finish();
            resolve(value);
          },
          (err: unknown) => {
            finish();
            reject(err);
          },
        );
      };
      if (this.#running < this.#max) start();
      else this.#queue.push(start);
    });
  }
}
