// `tote controller`: parse flags, start the controller, stop gracefully on SIGTERM.
import { readFileSync } from 'node:fs';
import { errorMessage } from '../api/index.ts';
import { parseControllerConfig } from '../runtime/config/index.ts';
import { watchedTlsFiles } from '../agentapi/index.ts';
import type { RenewableTls } from '../agentapi/index.ts';
import type { SigningAuthority } from '../controller/agents/pki.ts';
import { startController } from '../controller/manager.ts';
import type { ControllerConfig } from '../runtime/config/index.ts';
import type { Logger } from '../runtime/logging.ts';
import { commandLogger, parseOrExplain, terminationSignal } from './run.ts';

export async function runController(argv: string[]): Promise<number> {
  const parsed = parseOrExplain(parseControllerConfig, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const { config } = parsed;
  const log = commandLogger(config, 'controller');
  try {
    if (!config.tokenSigningKeyFile)
      throw new Error('--token-signing-key-file is required: transfers need signed tokens');
    const tls = controllerTls(config, log);
    const controller = await startController({
      config,
      tls: tls.tls,
      ...agentSigner(config),
      tokenSigningKey: readFileSync(config.tokenSigningKeyFile, 'utf8'),
      ttlSchedule: config.ttlSchedule,
      machine: {
        maxAttempts: config.maxTransferAttempts,
        retryBaseMs: config.transferRetryBaseMs,
        retryMaxMs: config.transferRetryMaxMs,
        transfersPerSource: config.transfersPerSource,
      },
      log,
    });
    log.info('controller started', { leaderElection: config.leaderElect });
    const outcome = await Promise.race([
      terminationSignal().then((signal) => ({ signal })),
      controller.done.then(
        () => ({ error: undefined }),
        (err: unknown) => ({ error: err }),
      ),
    ]);
    if ('signal' in outcome) {
      log.info('stopping', { signal: outcome.signal });
      tls.stop();
      await controller.stop();
      return 0;
    }
    if (outcome.error) {
      log.error('controller stopped', { error: errorMessage(outcome.error) });
      return 1;
    }
    return 0;
  } catch (err) {
    log.error('controller failed to start', { error: errorMessage(err) });
    return 1;
  }
}

/**
 * The controller's certificate, from files (cert-manager's or make-certs.sh's Secret), re-read every minute so a
 * renewal takes effect without a restart: new channels to agents use it, open ones keep theirs until they close.
 */
function controllerTls(config: ControllerConfig, log: Logger): { tls: RenewableTls; stop(): void } {
  if (!config.tlsCaFile || !config.tlsCertFile || !config.tlsKeyFile)
    throw new Error('--tls-ca-file, --tls-cert-file and --tls-key-file are required: agents only speak mTLS');
  return watchedTlsFiles({ ca: config.tlsCaFile, cert: config.tlsCertFile, key: config.tlsKeyFile }, log);
}

/**
 * The agent CA's certificate and key when given: the controller then signs agent certificates. Read now, so a missing
 * file stops the start with its name, and again at each signing, so a rotated CA needs no restart.
 */
function agentSigner(config: ControllerConfig): { agentSigner?: () => SigningAuthority } {
  const { agentSignerCertFile: certFile, agentSignerKeyFile: keyFile } = config;
  if (!certFile || !keyFile) return {};
  const read = (): SigningAuthority => ({
    certPem: readFileSync(certFile, 'utf8'),
    keyPem: readFileSync(keyFile, 'utf8'),
  });
  read();
  return { agentSigner: read };
}
