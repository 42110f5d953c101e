import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ToteError } from '../../../src/api/errors.ts';
import { KubeApiError, isGone, resourcePath, toKubeError } from '../../../src/runtime/kube.ts';
import type { IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import { KubeHttpError, readAll, resourceOfPath } from '../../../src/runtime/kube-http.ts';

const status = (code: number, reason: string, message = `${reason} message`) =>
  JSON.stringify({ kind: 'Status', status: 'Failure', code, reason, message });

describe('toKubeError', () => {
  const cases: [string, unknown, string, string][] = [
    ['404', new KubeHttpError(404, status(404, 'NotFound'), {}), 'not-found', 'NotFound'],
    ['409 AlreadyExists', new KubeHttpError(409, status(409, 'AlreadyExists'), {}), 'already-exists', 'AlreadyExists'],
    ['409 Conflict', new KubeHttpError(409, status(409, 'Conflict'), {}), 'conflict', 'Conflict'],
    ['410 Expired', new KubeHttpError(410, status(410, 'Expired'), {}), 'transient', 'Expired'],
    ['422 Invalid', new KubeHttpError(422, status(422, 'Invalid'), {}), 'terminal', 'Invalid'],
    ['403', new KubeHttpError(403, status(403, 'Forbidden'), {}), 'unauthorized', 'Forbidden'],
    [
      '429',
      new KubeHttpError(429, status(429, 'TooManyRequests'), { 'retry-after': '3' }),
      'transient',
      'TooManyRequests',
    ],
    ['503 without body', new KubeHttpError(503, 'oops', {}), 'transient', 'ServerError'],
    ['400', new KubeHttpError(400, status(400, 'BadRequest'), {}), 'terminal', 'BadRequest'],
    [
      'Status body without kind',
      new KubeHttpError(404, '{"reason":"NotFound","message":"m","code":404}', {}),
      'not-found',
      'NotFound',
    ],
    ['410 without body', new KubeHttpError(410, '', {}), 'transient', 'Expired'],
    [
      'connection refused',
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6443'), { code: 'ECONNREFUSED' }),
      'transient',
      'NetworkError',
    ],
    ['timeout', new DOMException('timed out', 'TimeoutError'), 'transient', 'Timeout'],
  ];
  for (const [what, err, kind, reason] of cases)
    it(what, () => {
      const e = toKubeError(err, 'get pods a/b');
      assert.ok(e instanceof KubeApiError);
      assert.deepEqual([e.kind, e.reason], [kind, reason]);
      assert.match(e.message, /^get pods a\/b: /);
    });

  it('uses the server message, not the HTTP boilerplate', () => {
    const e = toKubeError(new KubeHttpError(422, status(422, 'Invalid', 'spec.x: Invalid value'), {}));
    assert.equal(e.message, 'spec.x: Invalid value');
  });

  it('keeps Retry-After', () => {
    const e = toKubeError(new KubeHttpError(429, status(429, 'TooManyRequests'), { 'retry-after': '3' }));
    assert.equal((e as KubeApiError).retryAfterMs, 3000);
  });

  it('passes ToteErrors through and recognises 410', () => {
    const t = new ToteError('terminal', 'X', 'y');
    assert.equal(toKubeError(t), t);
    assert.ok(isGone(toKubeError(new KubeHttpError(410, '', {}))));
    assert.ok(!isGone(toKubeError(new KubeHttpError(404, '', {}))));
  });
});

describe('resourcePath', () => {
  it('builds core, group, namespaced and subresource paths', () => {
    const pods = { group: '', version: 'v1', plural: 'pods', namespaced: true };
    const recs = { group: 'tote.dev', version: 'v1alpha1', plural: 'salvagerecords', namespaced: true };
    assert.equal(resourcePath(pods), '/api/v1/pods');
    assert.equal(resourcePath(pods, 'ns', 'p'), '/api/v1/namespaces/ns/pods/p');
    assert.equal(
      resourcePath(recs, 'ns', 'r', 'status'),
      '/apis/tote.dev/v1alpha1/namespaces/ns/salvagerecords/r/status',
    );
  });
});

describe('resourceOfPath: the metric label of a request', () => {
  it('reads back what resourcePath builds, whatever the namespace and name', () => {
    const pods = { group: '', version: 'v1', plural: 'pods', namespaced: true };
    const recs = { group: 'tote.dev', version: 'v1alpha1', plural: 'salvagerecords', namespaced: true };
    const nodes = { group: '', version: 'v1', plural: 'nodes', namespaced: false };
    assert.equal(resourceOfPath(resourcePath(pods)), 'pods');
    assert.equal(resourceOfPath(resourcePath(pods, 'team-a', 'web-1')), 'pods');
    assert.equal(resourceOfPath(resourcePath(recs, 'ns', 'r', 'status')), 'salvagerecords/status');
    assert.equal(resourceOfPath(resourcePath(recs, 'ns')), 'salvagerecords');
    assert.equal(resourceOfPath(resourcePath(nodes, undefined, 'node-a')), 'nodes');
  });

  it('names a namespace itself as namespaces, and anything else as other', () => {
    assert.equal(resourceOfPath('/api/v1/namespaces'), 'namespaces');
    assert.equal(resourceOfPath('/api/v1/namespaces/team-a'), 'namespaces');
    assert.equal(resourceOfPath('/version'), 'other');
    assert.equal(resourceOfPath('/apis'), 'other');
  });
});

describe('readAll: a response body, read once', () => {
  it('takes its listeners off the response once read, so a pooled socket does not keep the body alive', async () => {
    const res = new PassThrough() as unknown as IncomingMessage;
    const body = readAll(res);
    (res as unknown as PassThrough).end('{"kind":"PodList"}');
    assert.equal(await body, '{"kind":"PodList"}');
    assert.equal(res.listenerCount('data'), 0);
    assert.equal(res.listenerCount('end'), 0);
    assert.equal(res.listenerCount('error'), 1, 'one listener that holds nothing');
    assert.doesNotThrow(() => res.emit('error', new Error('late')), 'a late error does not crash the process');
  });

  it('rejects with the stream error', async () => {
    const res = new PassThrough() as unknown as IncomingMessage;
    const body = readAll(res);
    (res as unknown as PassThrough).destroy(new Error('socket hang up'));
    await assert.rejects(body, /socket hang up/);
  });
});
