// Structured logging on winston: JSON lines for machines (the default in a cluster), or a compact text form for humans.
// Every record passes a redaction step first, so a secret that ends up in a log field (a token in a request object, a
// password in a parsed config, an Authorization header) is replaced before any transport sees it.

import winston from 'winston';
import type { Writable } from 'node:stream';

/** Log levels, most severe first (winston's npm levels, trimmed to the ones we use). */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * The logger every layer uses. child() returns a logger whose records all carry the given fields, e.g.
 * `log.child({ controller: 'salvagerecord', key, reconcileId })` for one reconcile.
 */
export interface Logger {
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
  isLevelEnabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where records go; default process.stderr (stdout stays free for command output). */
  stream?: Writable;
  /** Fields on every record, e.g. { component: 'controller' }. */
  defaultFields?: Record<string, unknown>;
}

/** Field names whose values never reach the output. Matched case-insensitively anywhere in the name. */
const SECRET_FIELD = /token|passw(or)?d|secret|authorization|credential|api[-_]?key|private[-_]?key|cookie/i;
/** Secrets embedded in free text: bearer tokens and basic-auth credentials in URLs. */
const SECRET_TEXT: [RegExp, string][] = [
  [/(bearer\s+)[A-Za-z0-9\-._~+/]+=*/gi, '$1[REDACTED]'],
  [/(\w+:\/\/)[^\s:/@]+:[^\s@/]+@/g, '$1[REDACTED]@'],
];
export const REDACTED = '[REDACTED]';

/** Replaces secrets in text (bearer tokens, user:password@ in URLs). */
export function redactText(text: string): string {
  let out = text;
  for (const [pattern, replacement] of SECRET_TEXT) out = out.replace(pattern, replacement);
  return out;
}

/**
 * A copy of value with every field whose name looks secret replaced by "[REDACTED]" and secrets in strings masked.
 * Walks plain objects, arrays and errors (message, stack, own fields); depth-limited and cycle-safe.
 */
export function redact(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth > 8) return '[Truncated]';
  if (seen.has(value)) return '[Circular]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1, seen));
  if (value instanceof Date) return value.toISOString();
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  const out: Record<string, unknown> = {};
  if (value instanceof Error) {
    out.name = value.name;
    out.message = redactText(value.message);
    if (value.stack) out.stack = redactText(value.stack);
  }
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_FIELD.test(k) && v !== undefined && v !== null && v !== '' ? REDACTED : redact(v, depth + 1, seen);
  }
  return out;
}

/** A winston format applying redact() to every field of a record (winston's symbol keys are left untouched). */
const redactFormat = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (key === 'level') continue;
    const v = info[key];
    info[key] = SECRET_FIELD.test(key) && v !== undefined && v !== null && v !== '' ? REDACTED : redact(v);
  }
  return info;
});

const textFormat = winston.format.printf((info) => {
  const { level, message, timestamp, ...rest } = info;
  const fields = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? (/[\s"=]/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
    .join(' ');
  return `${String(timestamp)} ${level.toUpperCase().padEnd(5)} ${String(message)}${fields ? ' ' + fields : ''}`;
});

/** Creates the process logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const w = winston.createLogger({
    levels: { error: 0, warn: 1, info: 2, debug: 3 },
    level: options.level ?? 'info',
    defaultMeta: options.defaultFields,
    format: winston.format.combine(
      redactFormat(),
      winston.format.timestamp(),
      options.format === 'text' ? textFormat : winston.format.json(),
    ),
    transports: [
      options.stream
        ? new winston.transports.Stream({ stream: options.stream })
        : new winston.transports.Stream({ stream: process.stderr }),
    ],
  });
  return wrap(w);
}

function wrap(w: winston.Logger): Logger {
  return {
    error: (message, fields) => void w.log('error', message, fields ?? {}),
    warn: (message, fields) => void w.log('warn', message, fields ?? {}),
    info: (message, fields) => void w.log('info', message, fields ?? {}),
    debug: (message, fields) => void w.log('debug', message, fields ?? {}),
    child: (fields) => wrap(w.child(fields)),
    isLevelEnabled: (level) => w.isLevelEnabled(level),
  };
}

/** A logger that drops everything (tests, libraries used without logging). */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child: () => silentLogger,
  isLevelEnabled: () => false,
};
