// Webhook delivery: one JSON POST per notification, with a timeout per attempt, retries with exponential backoff on
// network errors, 429 and 5xx, and an optional HMAC-SHA256 signature of the exact body bytes. The URL and key come
// from Secrets and are never logged: errors name the host only.
import { createHmac } from 'node:crypto';
import { ToteError } from '../../api/index.ts';

export interface WebhookTarget {
  url: string;
  /** HMAC key; when set, `X-Tote-Signature: sha256=<hex>` signs the body. */
  signingKey?: Buffer;
  timeoutMs: number;
}

export interface Notification {
  kind: string;
  message: string;
  record: { namespace: string; name: string; uid?: string };
  image: string;
  digest?: string;
  targetNode: string;
  sourceNode?: string;
  phase?: string;
  time: string;
}

export interface DeliveryOptions {
  attempts: number;
  baseDelayMs: number;
  /** Waits between attempts; injectable so tests need not wait. */
  delay: (ms: number) => Promise<void>;
}

const defaultDelivery: DeliveryOptions = {
  attempts: 3,
  baseDelayMs: 500,
  delay: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

export const signatureHeader = 'X-Tote-Signature';

export function sign(body: string, key: Buffer): string {
  return `sha256=${createHmac('sha256', key).update(body).digest('hex')}`;
}

/** Delivers one notification. Resolves when the receiver answered 2xx; throws a ToteError after the last attempt. */
export async function deliver(
  target: WebhookTarget,
  notification: Notification,
  options: Partial<DeliveryOptions> = {},
): Promise<void> {
  const { attempts, baseDelayMs, delay } = { ...defaultDelivery, ...options };
  const body = JSON.stringify({ source: 'tote', ...notification });
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'tote-webhook' };
  if (target.signingKey) headers[signatureHeader.toLowerCase()] = sign(body, target.signingKey);
  const host = safeHost(target.url);
  let last: ToteError | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const response = await fetch(target.url, {
        method: 'POST',
        headers,
        body,
        signal: AbortSignal.timeout(target.timeoutMs),
        redirect: 'error',
      });
      await response.body?.cancel();
      if (response.ok) return;
      const retryable = response.status === 429 || response.status >= 500;
      last = new ToteError(
        retryable ? 'transient' : 'terminal',
        'WebhookRejected',
        `webhook at ${host} answered HTTP ${response.status}`,
      );
      if (!retryable) throw last;
    } catch (err) {
      if (err instanceof ToteError && err.kind === 'terminal') throw err;
      last =
        err instanceof ToteError
          ? err
          : new ToteError('transient', 'WebhookUnreachable', `webhook at ${host} failed: ${describe(err)}`, {
              cause: err,
            });
    }
    if (attempt < attempts) await delay(baseDelayMs * 2 ** (attempt - 1));
  }
  throw last ?? new ToteError('transient', 'WebhookUnreachable', `webhook at ${host} failed`);
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return '(invalid URL)';
  }
}

function describe(err: unknown): string {
  if (err instanceof DOMException && err.name === 'TimeoutError') return 'timed out';
  if (err instanceof Error) {
    const cause = (err as { cause?: { code?: string } }).cause;
    return cause?.code ?? err.name;
  }
  return 'unknown error';
}
