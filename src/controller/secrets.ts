// Reads the Secrets policies refer to (registry credentials, CA bundles, webhook URL and key) with a short cache, so a
// burst of records does not GET the same Secret each time. tote has `get` on Secrets in its own namespace only, never
// list or watch: it reads only what a policy names, and only there (a reference elsewhere fails SecretOutOfScope
// before any API call). Values never reach logs or status; errors name the Secret, not its content.
import type { V1Secret } from '@kubernetes/client-node';
import { ToteError } from '../api/index.ts';
import type { Clock } from '../runtime/clock.ts';
import { resources } from '../runtime/kube.ts';
import type { KubeClient } from '../runtime/kube.ts';

export class SecretReader {
  readonly #kube: KubeClient;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, { at: number; secret: Promise<V1Secret | undefined> }>();
  /** The one namespace whose Secrets policies may name: the controller's own. */
  readonly namespace: string;

  constructor(kube: KubeClient, clock: Clock, namespace: string, ttlMs = 30_000) {
    this.#kube = kube;
    this.#clock = clock;
    this.namespace = namespace;
    this.#ttlMs = ttlMs;
  }

  /** Why a reference to a Secret in `namespace` cannot be read, or undefined when it may be. */
  outOfScope(namespace: string, name: string): string | undefined {
    return namespace === this.namespace
      ? undefined
      : `Secret ${namespace}/${name} is outside ${this.namespace}, the only namespace whose Secrets tote reads`;
  }

  /** The Secret, or undefined when it does not exist. @throws ToteError SecretOutOfScope outside tote's namespace. */
  async get(namespace: string, name: string): Promise<V1Secret | undefined> {
    const refused = this.outOfScope(namespace, name);
    if (refused) throw new ToteError('unauthorized', 'SecretOutOfScope', refused);
    const key = `${namespace}/${name}`;
    const now = this.#clock.now();
    const hit = this.#cache.get(key);
    if (hit && now - hit.at < this.#ttlMs) return hit.secret;
    const secret = this.#kube.getOrUndefined<V1Secret>(resources.secrets, name, namespace);
    this.#cache.set(key, { at: now, secret });
    secret.catch(() => this.#cache.delete(key));
    return secret;
  }

  /** One key of a Secret, decoded. @throws ToteError not-found (Secret or key missing), naming which. */
  async value(ref: { namespace: string; name: string; key?: string }, defaultKey: string): Promise<Buffer> {
    const key = ref.key ?? defaultKey;
    const secret = await this.get(ref.namespace, ref.name);
    if (!secret)
      throw new ToteError('not-found', 'SecretNotFound', `Secret ${ref.namespace}/${ref.name} does not exist`);
    const data = secret.data?.[key];
    if (data === undefined) {
      throw new ToteError(
        'not-found',
        'SecretKeyNotFound',
        `Secret ${ref.namespace}/${ref.name} has no key ${JSON.stringify(key)}`,
      );
    }
    return Buffer.from(data, 'base64');
  }

  invalidate(): void {
    this.#cache.clear();
  }
}
