// Sends a policy's webhook notifications. Delivery runs in the background so a slow receiver never holds a reconcile;
// each notification is retried by deliver() and its outcome counted. Only the event kinds the policy selects are sent.
import { errorMessage } from '../../api/index.ts';
import type { Logger } from '../../runtime/logging.ts';
import type { EffectivePolicy } from '../policy/effective-policy.ts';
import type { ControllerMetrics } from '../metrics.ts';
import type { SecretReader } from '../secrets.ts';
import { deliver } from './webhook.ts';
import type { DeliveryOptions, Notification } from './webhook.ts';

export class Notifier {
  readonly #secrets: SecretReader;
  readonly #log: Logger;
  readonly #metrics: ControllerMetrics;
  readonly #delivery: Partial<DeliveryOptions>;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: {
    secrets: SecretReader;
    log: Logger;
    metrics: ControllerMetrics;
    delivery?: Partial<DeliveryOptions>;
  }) {
    this.#secrets = options.secrets;
    this.#log = options.log;
    this.#metrics = options.metrics;
    this.#delivery = options.delivery ?? {};
  }

  /** Queues a notification when the policy has a webhook selecting this kind; returns at once. */
  notify(policy: EffectivePolicy, notification: Notification): void {
    const config = policy.notifications;
    if (!config || !config.events.includes(notification.kind)) return;
    const sending = (async () => {
      try {
        const url = (await this.#secrets.value(config.urlSecretRef, 'url')).toString('utf8').trim();
        const signingKey = config.signingSecretRef
          ? await this.#secrets.value(config.signingSecretRef, 'hmac-key')
          : undefined;
        await deliver(
          { url, timeoutMs: config.timeoutMs, ...(signingKey ? { signingKey } : {}) },
          notification,
          this.#delivery,
        );
        this.#metrics.notifications.inc({ result: 'delivered' });
      } catch (err) {
        this.#metrics.notifications.inc({ result: 'failed' });
        this.#log.warn('webhook notification failed', {
          policy: policy.name,
          kind: notification.kind,
          error: errorMessage(err),
        });
      }
    })();
    this.#inFlight.add(sending);
    void sending.finally(() => this.#inFlight.delete(sending));
  }

  /** Resolves when every queued notification has been delivered or given up (shutdown, tests). */
  async flush(): Promise<void> {
    await Promise.all([...this.#inFlight]);
  }
}
