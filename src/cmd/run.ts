// What every command does around its work: parse configuration (printing --help or a clear error), make the logger,
// and turn SIGTERM/SIGINT into a graceful stop.
import { ConfigError, HelpRequested, processInput } from '../runtime/config/index.ts';
import { createLogger } from '../runtime/logging.ts';
import type { LogFormat, Logger, LogLevel } from '../runtime/logging.ts';

/** Parses with `parse`; on --help prints it and returns undefined, on a bad flag prints why and returns undefined. */
export function parseOrExplain<C>(
  parse: (argv: readonly string[], env: Readonly<Record<string, string | undefined>>) => C,
  argv: readonly string[],
): { config: C } | { exitCode: number } {
  try {
    return { config: parse(argv, processInput().env) };
  } catch (err) {
    if (err instanceof HelpRequested) {
      process.stdout.write(`${err.text}\n`);
      return { exitCode: 0 };
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return { exitCode: 2 };
    }
    throw err;
  }
}

export function commandLogger(config: { logLevel: LogLevel; logFormat: LogFormat }, component: string): Logger {
  return createLogger({ level: config.logLevel, format: config.logFormat, defaultFields: { component } });
}

/** Resolves with the signal's name on the first SIGTERM or SIGINT. */
export function terminationSignal(): Promise<string> {
  return new Promise((resolve) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => resolve(signal));
  });
}
