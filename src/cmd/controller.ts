// `tote controller`: parse flags, start the controller, stop gracefully on SIGTERM.
import { readFileSync } from 'node:fs';
import { errorMessage } from '../api/index.ts';
import { parseControllerConfig } from '../runtime/config/index.ts';
import { readTlsMaterial, startController } from '../controller/manager.ts';
import { commandLogger, parseOrExplain, terminationSignal } from './run.ts';

export async function runController(argv: string[]): Promise<number> {
  const parsed = parseOrExplain(parseControllerConfig, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const { config } = parsed;
  const log = commandLogger(config, 'controller');
  try {
    if (!config.tokenSigningKeyFile)
      throw new Error('--token-signing-key-file is required: transfers need signed tokens');
    const controller = await startController({
      config,
      tls: readTlsMaterial(config),
      tokenSigningKey: readFileSync(config.tokenSigningKeyFile, 'utf8'),
      ttlSchedule: config.ttlSchedule,
      machine: {
        maxAttempts: config.maxTransferAttempts,
        retryBaseMs: config.transferRetryBaseMs,
        retryMaxMs: config.transferRetryMaxMs,
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
