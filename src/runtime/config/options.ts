// Declarative command-line/environment configuration. Each option is declared once, with its flag, environment
// variable, default, parser and help text together; parseConfig() turns (argv, env) into a frozen, validated object and
// --help text is generated from the same table, so the three never drift apart. Precedence: flag, then env, then
// default. Pure: callers pass argv and env (processInput() reads the real ones; it is the only place that does).

import { formatDuration, parseDuration } from '../../api/duration.ts';

/** One declared option. Build them with the helpers in `option` rather than by hand. */
export interface Option<T> {
  /** Flag name without dashes, kebab-case: 'metrics-bind-address' for --metrics-bind-address. */
  readonly flag: string;
  /** Environment variable read when the flag is absent, e.g. 'TOTE_METRICS_BIND_ADDRESS'. */
  readonly env?: string | undefined;
  /** One sentence for --help. */
  readonly help: string;
  /** What the value looks like, for --help: 'duration', 'path', 'host:port'. */
  readonly valueName: string;
  /** Used when neither flag nor env is given. Undefined and not required means the value may be undefined. */
  readonly default?: T | undefined;
  /** Fails parsing when neither flag nor env gives a value. */
  readonly required?: boolean | undefined;
  /** Boolean flags take no value on the command line (--leader-elect), though --flag=false works. */
  readonly isBoolean?: boolean | undefined;
  /** List options may repeat; each occurrence's values are appended. */
  readonly repeatable?: boolean | undefined;
  /** Hide the value in error messages (secrets passed inline). */
  readonly sensitive?: boolean | undefined;
  /** Converts one raw string; throws an Error whose message says what was expected. */
  readonly parse: (raw: string) => T;
  /** Renders the default for --help. (Method syntax keeps Option<T> assignable to Option<unknown>.) */
  show?(value: T): string;
}

/** A table of options: the keys become the config object's fields. */
export type OptionTable = Readonly<Record<string, Option<unknown>>>;

/** The frozen config object a table parses into. */
export type ConfigOf<D extends OptionTable> = {
  readonly [K in keyof D]: D[K] extends Option<infer T> ? T : never;
};

/** What every builder takes. */
export interface OptionBase {
  flag: string;
  env?: string;
  help: string;
  sensitive?: boolean;
}

/**
 * An option builder. The overloads type the result: with a default or `required: true` the field is always set;
 * otherwise it may be undefined.
 */
export interface OptionBuilder<T, Extra = object> {
  (spec: OptionBase & Extra & { default: T }): Option<T>;
  (spec: OptionBase & Extra & { required: true }): Option<T>;
  (spec: OptionBase & Extra): Option<T | undefined>;
}

function builder<T, Extra = object>(
  valueName: string,
  makeParse: (extra: Extra) => (raw: string) => T,
  more: Partial<Pick<Option<T>, 'isBoolean' | 'repeatable' | 'show'>> = {},
): OptionBuilder<T, Extra> {
  return ((spec: OptionBase & Extra & { default?: T; required?: boolean; valueName?: string }) => ({
    flag: spec.flag,
    env: spec.env,
    help: spec.help,
    sensitive: spec.sensitive,
    default: spec.default,
    required: spec.required,
    valueName: spec.valueName ?? valueName,
    parse: makeParse(spec),
    ...more,
  })) as OptionBuilder<T, Extra>;
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

function parseInteger(raw: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(raw.trim())) throw new Error(`expected an integer, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new Error(`expected an integer between ${min} and ${max}, got ${n}`);
  return n;
}

/** Parses "host:port", ":port" (all interfaces) or "0" (disabled) into its parts. */
export interface BindAddress {
  /** Empty string means every interface. */
  readonly host: string;
  readonly port: number;
  /** The original text, for logs. */
  readonly text: string;
}

export function parseBindAddress(raw: string): BindAddress | undefined {
  if (raw === '0') return undefined;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(raw.trim());
  if (!m) throw new Error(`expected host:port, :port or 0 (disabled), got "${raw}"`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`port out of range in "${raw}"`);
  return Object.freeze({ host: m[1] ?? m[2] ?? '', port, text: raw.trim() });
}

/** Builders for the usual option types. */
export const option = {
  string: builder<string>('string', () => (raw) => raw),
  /** A file path; checked only for being non-empty (existence is checked where the file is read). */
  path: builder<string>('path', () => (raw) => {
    if (raw.trim() === '') throw new Error('expected a path, got an empty string');
    return raw;
  }),
  boolean: builder<boolean>(
    'bool',
    () => (raw) => {
      const v = raw.trim().toLowerCase();
      if (TRUE.has(v)) return true;
      if (FALSE.has(v)) return false;
      throw new Error(`expected true or false, got "${raw}"`);
    },
    { isBoolean: true },
  ),
  integer: builder<number, { min?: number; max?: number }>(
    'int',
    (extra) => (raw) => parseInteger(raw, extra.min ?? Number.MIN_SAFE_INTEGER, extra.max ?? Number.MAX_SAFE_INTEGER),
  ),
  number: builder<number, { min?: number; max?: number }>('number', (extra) => (raw) => {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new Error(`expected a number, got "${raw}"`);
    if (n < (extra.min ?? -Infinity) || n > (extra.max ?? Infinity))
      throw new Error(`expected a number between ${extra.min ?? '-∞'} and ${extra.max ?? '∞'}, got ${n}`);
    return n;
  }),
  port: builder<number>('port', () => (raw) => parseInteger(raw, 1, 65535)),
  /** A Go-style duration ("15s", "1h30m"), parsed to milliseconds. */
  duration: builder<number, { minMs?: number }>(
    'duration',
    (extra) => (raw) => {
      let ms: number;
      try {
        ms = parseDuration(raw.trim());
      } catch {
        throw new Error(`expected a duration such as 15s, 2m or 1h30m, got "${raw}"`);
      }
      if (ms < (extra.minMs ?? 0)) throw new Error(`expected a duration of at least ${extra.minMs}ms, got "${raw}"`);
      return ms;
    },
    { show: (ms) => formatDuration(ms) },
  ),
  /** host:port, :port, or 0 to disable (→ undefined). */
  bindAddress: builder<BindAddress | undefined>('host:port', () => parseBindAddress, {
    show: (a) => (a ? a.text : '0'),
  }),
  /** One of a fixed set of words. */
  choice: <const C extends string>(choices: readonly C[]) =>
    builder<C>(choices.join('|'), () => (raw) => {
      const v = raw.trim();
      if (!(choices as readonly string[]).includes(v))
        throw new Error(`expected one of ${choices.join(', ')}, got "${raw}"`);
      return v as C;
    }),
  /** Comma-separated values; the flag may repeat. Empty items are dropped. */
  list: builder<readonly string[]>(
    'a,b,...',
    () => (raw) =>
      Object.freeze(
        raw
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      ),
    { repeatable: true, show: (v) => (v.length ? v.join(',') : '""') },
  ),
  /** Comma-separated key=value pairs ("node-a=127.0.0.1:7001,node-b=..."); the flag may repeat. */
  map: builder<Readonly<Record<string, string>>>(
    'k=v,...',
    () => (raw) => {
      const out: Record<string, string> = {};
      for (const item of raw.split(',')) {
        if (item.trim() === '') continue;
        const eq = item.indexOf('=');
        if (eq <= 0) throw new Error(`expected key=value pairs separated by commas, got "${item.trim()}"`);
        out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
      }
      return Object.freeze(out);
    },
    {
      repeatable: true,
      show: (v) =>
        Object.entries(v)
          .map(([k, x]) => `${k}=${x}`)
          .join(',') || '""',
    },
  ),
};

/** Why configuration was refused. `problems` names each flag at fault; message joins them. */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Thrown by parseConfig for --help / -h; `text` is the generated help. */
export class HelpRequested extends Error {
  readonly text: string;

  constructor(text: string) {
    super('help requested');
    this.name = 'HelpRequested';
    this.text = text;
  }
}

export interface ParseOptions<D extends OptionTable> {
  /** First line of --help, e.g. "tote controller [flags]". */
  usage?: string;
  /** A paragraph under the usage line. */
  description?: string;
  /** Cross-field checks on the parsed object; each returned string is a problem (name the flags). */
  validate?: (config: ConfigOf<D>) => readonly string[];
}

/**
 * Parses argv (without the program and sub-command words) and env against the table. Returns a frozen object with a
 * field per option. Throws ConfigError listing every problem (unknown flags, bad values, missing required ones,
 * failed cross-checks), or HelpRequested for --help/-h.
 */
export function parseConfig<D extends OptionTable>(
  table: D,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  options: ParseOptions<D> = {},
): ConfigOf<D> {
  const byFlag = new Map<string, [string, Option<unknown>]>();
  for (const [field, opt] of Object.entries(table)) {
    if (byFlag.has(opt.flag)) throw new Error(`option table declares --${opt.flag} twice`);
    byFlag.set(opt.flag, [field, opt]);
  }
  const problems: string[] = [];
  const fromFlags = new Map<string, string[]>();

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') throw new HelpRequested(helpText(table, options));
    if (arg === '--') {
      if (i + 1 < argv.length) problems.push(`unexpected arguments: ${argv.slice(i + 1).join(' ')}`);
      break;
    }
    if (!arg.startsWith('--')) {
      problems.push(`unexpected argument "${arg}" (flags look like --name=value)`);
      continue;
    }
    const eq = arg.indexOf('=');
    let name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    let entry = byFlag.get(name);
    if (!entry && name.startsWith('no-') && value === undefined) {
      const positive = byFlag.get(name.slice(3));
      if (positive?.[1].isBoolean) {
        entry = positive;
        name = name.slice(3);
        value = 'false';
      }
    }
    if (!entry) {
      problems.push(`unknown flag --${name}${suggest(name, [...byFlag.keys()])}`);
      continue;
    }
    const [, opt] = entry;
    if (value === undefined) {
      if (opt.isBoolean) value = 'true';
      else if (i + 1 < argv.length && !(argv[i + 1] as string).startsWith('--')) value = argv[++i] as string;
      else {
        problems.push(`--${name}: needs a value (${opt.valueName})`);
        continue;
      }
    }
    const values = fromFlags.get(name) ?? [];
    if (values.length > 0 && !opt.repeatable) {
      problems.push(`--${name}: given more than once`);
      continue;
    }
    values.push(value);
    fromFlags.set(name, values);
  }

  const out: Record<string, unknown> = {};
  for (const [field, opt] of Object.entries(table)) {
    const flagValues = fromFlags.get(opt.flag);
    const envValue = opt.env === undefined ? undefined : env[opt.env];
    let raws: string[] | undefined;
    let source: string;
    if (flagValues) {
      raws = flagValues;
      source = `--${opt.flag}`;
    } else if (envValue !== undefined && envValue !== '') {
      raws = [envValue];
      source = `--${opt.flag} (from $${opt.env})`;
    } else {
      source = `--${opt.flag}`;
    }
    if (!raws) {
      if (opt.required) problems.push(`--${opt.flag}: required${opt.env ? ` (or set $${opt.env})` : ''}`);
      else out[field] = opt.default;
      continue;
    }
    try {
      if (opt.repeatable) {
        const parts = raws.map((r) => opt.parse(r));
        out[field] = mergeRepeated(parts);
      } else {
        out[field] = opt.parse(raws[0] as string);
      }
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      problems.push(`${source}: ${opt.sensitive ? msg.replace(/".*"/, '"<hidden>"') : msg}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const config = Object.freeze(out) as ConfigOf<D>;
  const crossProblems = options.validate?.(config) ?? [];
  if (crossProblems.length > 0) throw new ConfigError(crossProblems);
  return config;
}

function mergeRepeated(parts: unknown[]): unknown {
  if (parts.every(Array.isArray)) return Object.freeze(parts.flat());
  if (parts.every((p) => p !== null && typeof p === 'object'))
    return Object.freeze(Object.assign({}, ...(parts as object[])));
  return parts[parts.length - 1];
}

function suggest(name: string, known: string[]): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best ? ` (did you mean --${best}?)` : '';
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(
        (prev[j] as number) + 1,
        (cur[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    prev = cur;
  }
  return prev[b.length] as number;
}

/** The --help text of a table: usage, description, then one entry per option with its env var and default. */
export function helpText<D extends OptionTable>(
  table: D,
  options: Pick<ParseOptions<D>, 'usage' | 'description'> = {},
) {
  const lines: string[] = [];
  if (options.usage) lines.push(`Usage: ${options.usage}`, '');
  if (options.description) lines.push(options.description, '');
  lines.push('Flags:');
  for (const opt of Object.values(table)) {
    const head = opt.isBoolean ? `  --${opt.flag}` : `  --${opt.flag} ${opt.valueName}`;
    lines.push(head);
    const facts: string[] = [];
    if (opt.env) facts.push(`env ${opt.env}`);
    if (opt.required) facts.push('required');
    else if (opt.default !== undefined) facts.push(`default ${showDefault(opt)}`);
    lines.push(`      ${opt.help}${facts.length ? ` [${facts.join('; ')}]` : ''}`);
  }
  lines.push('  --help', '      Show this help.');
  return lines.join('\n') + '\n';
}

function showDefault(opt: Option<unknown>): string {
  if (opt.sensitive) return '<hidden>';
  const v = opt.default;
  if (opt.show) return opt.show(v);
  return typeof v === 'string' ? (v === '' ? '""' : v) : JSON.stringify(v);
}

/** The real process's arguments (after `node script subcommand`) and environment: the one place that reads them. */
export function processInput(skip = 2): { argv: string[]; env: Readonly<Record<string, string | undefined>> } {
  return { argv: process.argv.slice(skip), env: { ...process.env } };
}

/**
 * Separates the words that are not flags (`why my-pod`) from the flags, for commands that take arguments, and spells
 * short aliases out (`-n team` → `--namespace team`). A flag written without `=` that takes a value keeps the next
 * word as its value, as parseConfig reads it.
 */
export function splitPositionals<D extends OptionTable>(
  table: D,
  argv: readonly string[],
  aliases: Readonly<Record<string, string>> = {},
): { positionals: string[]; flags: string[] } {
  const valued = new Set(
    Object.values(table)
      .filter((o) => !o.isBoolean)
      .map((o) => o.flag),
  );
  const positionals: string[] = [];
  const flags: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = aliases[argv[i] as string] ?? (argv[i] as string);
    if (!arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    flags.push(arg);
    const takesNext = arg.startsWith('--') && !arg.includes('=') && valued.has(arg.slice(2));
    if (takesNext && i + 1 < argv.length) flags.push(argv[++i] as string);
  }
  return { positionals, flags };
}
