// TLS material from PEM files (a mounted Secret), re-read while the process runs: cert-manager and
// hack/certs/make-certs.sh renew certificates by rewriting the Secret, and the kubelet updates the mounted files in
// place, so a renewal takes effect without a rollout.
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { Logger } from '../runtime/logging.ts';
import { RenewableTls } from './tls.ts';
import type { TlsMaterial } from './tls.ts';

export interface TlsFiles {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

export function readTlsFiles(files: TlsFiles): TlsMaterial {
  return { ca: readFileSync(files.ca), cert: readFileSync(files.cert), key: readFileSync(files.key) };
}

const sameMaterial = (a: TlsMaterial, b: TlsMaterial): boolean =>
  a.ca.equals(b.ca) && a.cert.equals(b.cert) && a.key.equals(b.key);

/**
 * Re-reads `files` every `intervalMs` and replaces `tls`'s material when they changed and form a usable set (a key
 * matching its certificate: the kubelet swaps a Secret's files atomically, but a hand edit may land half-way).
 * A set that does not load is reported and the current material kept.
 */
export function reloadTlsFiles(
  files: TlsFiles,
  tls: RenewableTls,
  options: { intervalMs: number; onReload(): void; onError(message: string): void },
): { stop(): void } {
  const check = () => {
    let next: TlsMaterial;
    try {
      next = readTlsFiles(files);
      if (sameMaterial(next, tls.current)) return;
      createSecureContext({ ca: next.ca, cert: next.cert, key: next.key });
    } catch (err) {
      options.onError(`certificate files not reloaded, the current ones stay: ${(err as Error).message}`);
      return;
    }
    tls.replace(next);
    options.onReload();
  };
  const timer = setInterval(check, options.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/** Material loaded from `files` now and re-read every minute; renewals and refusals are logged. */
export function watchedTlsFiles(files: TlsFiles, log: Logger): { tls: RenewableTls; stop(): void } {
  const tls = new RenewableTls(readTlsFiles(files));
  const reload = reloadTlsFiles(files, tls, {
    intervalMs: 60_000,
    onReload: () => log.info('certificate files reloaded'),
    onError: (message) => log.warn(message),
  });
  return { tls, stop: () => reload.stop() };
}
