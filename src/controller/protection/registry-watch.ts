// Does the image's registry still serve this digest? Asked at a bounded rate: each (repository, digest) at most once per
// the policy's registryCheckInterval, at most four questions at once, the answer cached in memory (a new leader asks
// again). A HEAD of the manifest by digest, as a pull would start, with the policy's credentials.
//
// Concurrency: event-loop only; two surveys wanting the same answer share one question.
import { errorMessage, isToteError } from '../../api/index.ts';
import { parseReference, RegistryClient } from '../../registry/index.ts';
import type { CredentialLookup } from '../../registry/index.ts';
import type { Clock } from '../../runtime/clock.ts';
import { ConcurrencyLimiter } from '../../runtime/concurrency-limiter.ts';
import type { Logger } from '../../runtime/logging.ts';
import { isLoopbackRegistry } from '../registry-access.ts';
import type { RegistryAnswer } from './protection-plan.ts';

interface Cached {
  answer: Exclude<RegistryAnswer, 'unknown'>;
  at: number;
}

/** Answers kept at most; the oldest go first (a cluster runs far fewer distinct images). */
const maxAnswers = 10_000;

export class RegistryWatch {
  readonly #answers = new Map<string, Cached>();
  readonly #asking = new Map<string, Promise<Cached>>();
  readonly #limiter = new ConcurrencyLimiter(4);
  readonly #clock: Clock;
  readonly #timeoutMs: number;
  readonly #log: Logger;
  /** Questions actually sent to registries (cache misses), for tests and metrics. */
  asked = 0;

  constructor(options: { clock: Clock; log: Logger; timeoutMs?: number }) {
    this.#clock = options.clock;
    this.#log = options.log;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  /**
   * Milliseconds until the first of these images' answers is older than `intervalMs` (0 for one never asked): when
   * to survey again so a registry that stopped serving is noticed one interval after the answer that it served.
   */
  dueInMs(images: readonly { imageRef: string; digest: string }[], intervalMs: number): number {
    const now = this.#clock.now();
    let due = Infinity;
    for (const { imageRef, digest } of images) {
      const key = keyOf(imageRef, digest);
      const cached = key === undefined ? undefined : this.#answers.get(key);
      due = Math.min(due, cached ? Math.max(0, cached.at + intervalMs - now) : 0);
    }
    return due;
  }

  /** The registry's answer for `digest` of `imageRef`'s repository, asked anew once older than `intervalMs`. */
  async check(
    imageRef: string,
    digest: string,
    options: { intervalMs: number; credentials?: CredentialLookup; signal?: AbortSignal },
  ): Promise<Exclude<RegistryAnswer, 'unknown'>> {
    const key = keyOf(imageRef, digest);
    if (key === undefined) return 'gone';
    const cached = this.#answers.get(key);
    if (cached && this.#clock.now() - cached.at < options.intervalMs) return cached.answer;
    let asking = this.#asking.get(key);
    if (!asking) {
      asking = this.#limiter
        .run(() => this.#ask(key, options.credentials, options.signal))
        .finally(() => this.#asking.delete(key));
      this.#asking.set(key, asking);
    }
    return (await asking).answer;
  }

  async #ask(reference: string, credentials: CredentialLookup | undefined, signal?: AbortSignal): Promise<Cached> {
    this.asked++;
    const client = new RegistryClient({
      timeoutMs: this.#timeoutMs,
      ...(credentials ? { credentials } : {}),
      ...(isLoopbackRegistry(reference) ? { plainHttp: true } : {}),
    });
    let answer: Cached['answer'];
    try {
      await client.resolve(reference, { timeoutMs: this.#timeoutMs, ...(signal ? { signal } : {}) });
      answer = 'serves';
    } catch (err) {
      // Not found or refused: gone for this policy. Anything else (down, timing out): a new node could not pull it
      // either, so it counts as not served; the answer is asked again next interval.
      answer = isToteError(err, 'not-found') || isToteError(err, 'unauthorized') ? 'gone' : 'unreachable';
      this.#log.debug('registry does not serve the digest', { reference, answer, error: errorMessage(err) });
    } finally {
      client.close();
    }
    const cached = { answer, at: this.#clock.now() };
    this.#answers.delete(reference);
    this.#answers.set(reference, cached);
    if (this.#answers.size > maxAnswers) {
      const oldest = this.#answers.keys().next().value;
      if (oldest !== undefined) this.#answers.delete(oldest);
    }
    return cached;
  }
}

/** `repository@digest` of an image, or undefined for a reference that does not parse (no registry can serve it). */
function keyOf(imageRef: string, digest: string): string | undefined {
  try {
    return `${parseReference(imageRef).name}@${digest}`;
  } catch {
    return undefined;
  }
}
