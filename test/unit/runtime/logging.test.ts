import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, redact, REDACTED } from '../../../src/runtime/logging.ts';
import type { LoggerOptions } from '../../../src/runtime/logging.ts';

/** A logger writing into an array of lines. */
function capture(options: Omit<LoggerOptions, 'stream'> = {}) {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      cb();
    },
  });
  return { log: createLogger({ ...options, stream }), lines, json: () => lines.map((l) => JSON.parse(l)) };
}

describe('redaction', () => {
  const cases: { what: string; fields: Record<string, unknown>; secret: string }[] = [
    { what: 'token field', fields: { token: 'tok-123' }, secret: 'tok-123' },
    { what: 'password, any case', fields: { dbPassword: 'pw-123' }, secret: 'pw-123' },
    { what: 'nested secret', fields: { request: { headers: { Authorization: 'Basic abc' } } }, secret: 'abc' },
    { what: 'secret in an array', fields: { creds: [{ clientSecret: 'cs-1' }] }, secret: 'cs-1' },
    { what: 'bearer token in text', fields: { note: 'sent Bearer eyJhbGciOi.payload.sig' }, secret: 'eyJhbGciOi' },
    { what: 'credentials in a URL', fields: { url: 'https://user:hunter2@registry.example/v2/' }, secret: 'hunter2' },
    {
      what: 'error carrying a token',
      fields: { err: Object.assign(new Error('boom'), { token: 'e-tok' }) },
      secret: 'e-tok',
    },
    { what: 'api key', fields: { api_key: 'k-9' }, secret: 'k-9' },
  ];
  for (const c of cases) {
    it(`never writes a ${c.what}`, () => {
      const { log, lines } = capture();
      log.info('event', c.fields);
      assert.equal(lines.length, 1);
      assert.ok(!lines[0]?.includes(c.secret), lines[0]);
    });
  }

  it('masks secrets in the message itself', () => {
    const { log, lines } = capture();
    log.warn('calling with Bearer abc.def.ghi failed');
    assert.ok(!lines[0]?.includes('abc.def.ghi'));
    assert.match(lines[0] ?? '', /Bearer \[REDACTED\]/);
  });

  it('keeps ordinary fields, and errors readable', () => {
    const out = redact({ key: 'ns/name', count: 2, err: new Error('kaput'), tokenBucket: undefined }) as Record<
      string,
      unknown
    >;
    assert.equal(out.key, 'ns/name');
    assert.equal(out.count, 2);
    assert.equal((out.err as { message: string }).message, 'kaput');
    assert.equal(out.tokenBucket, undefined);
  });

  it('replaces the value, not the field', () => {
    const out = redact({ password: 'x' }) as Record<string, unknown>;
    assert.deepEqual(out, { password: REDACTED });
  });

  it('survives cycles', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    assert.deepEqual(redact(a), { name: 'a', self: '[Circular]' });
  });

  it('redacts in text format too', () => {
    const { log, lines } = capture({ format: 'text' });
    log.info('hello', { secret: 's-1', key: 'k' });
    assert.ok(!lines[0]?.includes('s-1'));
    assert.match(lines[0] ?? '', /INFO {2}hello secret=\[REDACTED\] key=k/);
  });
});

describe('logger', () => {
  it('writes JSON with level, message, timestamp and fields', () => {
    const { log, json } = capture();
    log.info('started', { workers: 4 });
    const [rec] = json();
    assert.equal(rec.level, 'info');
    assert.equal(rec.message, 'started');
    assert.equal(rec.workers, 4);
    assert.ok(!Number.isNaN(Date.parse(rec.timestamp)));
  });

  it('child loggers carry their fields on every record', () => {
    const { log, json } = capture({ defaultFields: { component: 'controller' } });
    const child = log.child({ key: 'default/p', reconcileId: 'r-1' });
    child.info('one');
    child.child({ step: 'x' }).error('two');
    const [a, b] = json();
    assert.deepEqual([a.component, a.key, a.reconcileId], ['controller', 'default/p', 'r-1']);
    assert.deepEqual([b.key, b.reconcileId, b.step, b.level], ['default/p', 'r-1', 'x', 'error']);
  });

  it('filters by level', () => {
    const { log, json } = capture({ level: 'warn' });
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    assert.deepEqual(
      json().map((r) => r.message),
      ['w', 'e'],
    );
    assert.equal(log.isLevelEnabled('info'), false);
    assert.equal(log.isLevelEnabled('error'), true);
  });
});
