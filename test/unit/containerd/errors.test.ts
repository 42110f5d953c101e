import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { fromContainerdError } from '../../../src/containerd/index.ts';
import { fromAgentError, toStatus } from '../../../src/agentapi/index.ts';
import { ToteError } from '../../../src/api/errors.ts';

const grpcError = (code: status, details = 'boom', metadata = new Metadata()): ServiceError =>
  Object.assign(new Error(`${code} ${details}`), { code, details, metadata });

describe('containerd gRPC status → typed error', () => {
  const table: [status, string][] = [
    [status.NOT_FOUND, 'not-found'],
    [status.ALREADY_EXISTS, 'already-exists'],
    [status.UNAVAILABLE, 'transient'],
    [status.DEADLINE_EXCEEDED, 'transient'],
    [status.FAILED_PRECONDITION, 'terminal'],
    [status.INVALID_ARGUMENT, 'terminal'],
    [status.PERMISSION_DENIED, 'unauthorized'],
    [status.DATA_LOSS, 'integrity'],
    [status.ABORTED, 'conflict'],
  ];
  for (const [code, kind] of table) {
    it(`${status[code]} → ${kind}`, () => assert.equal(fromContainerdError(grpcError(code), 'op').kind, kind));
  }
  it('re-reads a code in the context of one call', () => {
    const err = fromContainerdError(grpcError(status.FAILED_PRECONDITION), 'commit', {
      [status.FAILED_PRECONDITION]: 'integrity',
    });
    assert.equal(err.kind, 'integrity');
    assert.equal(err.reason, 'ContainerdFailedPrecondition');
  });
  it('treats a non-gRPC failure as transient', () =>
    assert.equal(fromContainerdError(new Error('socket'), 'op').kind, 'transient'));
});

describe('agent error contract', () => {
  for (const kind of [
    'transient',
    'terminal',
    'conflict',
    'not-found',
    'already-exists',
    'unauthorized',
    'integrity',
  ] as const) {
    it(`${kind} survives the wire with its reason`, () => {
      const sent = toStatus(new ToteError(kind, 'SomeReason', 'message'));
      const received = fromAgentError(grpcError(sent.code ?? status.UNKNOWN, sent.details, sent.metadata), 'Op');
      assert.equal(received.kind, kind);
      assert.equal(received.reason, 'SomeReason');
    });
  }
  it('answers INTERNAL for unexpected errors', () => assert.equal(toStatus(new Error('x')).code, status.INTERNAL));
});
