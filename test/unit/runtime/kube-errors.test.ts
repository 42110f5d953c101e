import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApiException } from '@kubernetes/client-node';
import { ToteError } from '../../../src/api/errors.ts';
import { KubeApiError, isGone, resourcePath, toKubeError } from '../../../src/runtime/kube.ts';

const status = (code: number, reason: string, message = `${reason} message`) =>
  JSON.stringify({ kind: 'Status', status: 'Failure', code, reason, message });

describe('toKubeError', () => {
  const cases: [string, unknown, string, string][] = [
    ['404', new ApiException(404, 'x', status(404, 'NotFound'), {}), 'not-found', 'NotFound'],
    [
      '409 AlreadyExists',
      new ApiException(409, 'x', status(409, 'AlreadyExists'), {}),
      'already-exists',
      'AlreadyExists',
    ],
    ['409 Conflict', new ApiException(409, 'x', status(409, 'Conflict'), {}), 'conflict', 'Conflict'],
    ['410 Expired', new ApiException(410, 'x', status(410, 'Expired'), {}), 'transient', 'Expired'],
    ['422 Invalid', new ApiException(422, 'x', status(422, 'Invalid'), {}), 'terminal', 'Invalid'],
    ['403', new ApiException(403, 'x', status(403, 'Forbidden'), {}), 'unauthorized', 'Forbidden'],
    [
      '429',
      new ApiException(429, 'x', status(429, 'TooManyRequests'), { 'retry-after': '3' }),
      'transient',
      'TooManyRequests',
    ],
    ['503 without body', new ApiException(503, 'x', 'oops', {}), 'transient', 'ServerError'],
    ['400', new ApiException(400, 'x', status(400, 'BadRequest'), {}), 'terminal', 'BadRequest'],
    [
      'typed Status body',
      new ApiException(404, 'x', { reason: 'NotFound', message: 'm', code: 404 }, {}),
      'not-found',
      'NotFound',
    ],
    ['watch HTTP error', Object.assign(new Error('Gone'), { statusCode: 410 }), 'transient', 'Expired'],
    [
      'connection refused',
      Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }),
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
    const e = toKubeError(
      new ApiException(422, 'HTTP-Code: 422 ...', status(422, 'Invalid', 'spec.x: Invalid value'), {}),
    );
    assert.equal(e.message, 'spec.x: Invalid value');
  });

  it('keeps Retry-After', () => {
    const e = toKubeError(new ApiException(429, 'x', status(429, 'TooManyRequests'), { 'retry-after': '3' }));
    assert.equal((e as KubeApiError).retryAfterMs, 3000);
  });

  it('passes ToteErrors through and recognises 410', () => {
    const t = new ToteError('terminal', 'X', 'y');
    assert.equal(toKubeError(t), t);
    assert.ok(isGone(toKubeError(new ApiException(410, 'x', '', {}))));
    assert.ok(!isGone(toKubeError(new ApiException(404, 'x', '', {}))));
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
