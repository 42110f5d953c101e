import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { identityFromCertificate, identityUri } from '../../../src/agentapi/index.ts';

describe('peer identity from a certificate', () => {
  const cases: { san: string | undefined; want: ReturnType<typeof identityFromCertificate> }[] = [
    { san: 'URI:urn:tote:controller', want: { kind: 'controller' } },
    { san: 'URI:urn:tote:node:node-a, DNS:localhost, IP Address:127.0.0.1', want: { kind: 'agent', node: 'node-a' } },
    { san: 'DNS:localhost', want: undefined },
    { san: undefined, want: undefined },
    { san: 'URI:urn:tote:node:', want: undefined },
    { san: 'URI:urn:tote:node:a, URI:urn:tote:node:b', want: undefined },
    { san: 'URI:https://example.com', want: undefined },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.san)} → ${JSON.stringify(c.want)}`, () => {
      assert.deepEqual(identityFromCertificate(c.san === undefined ? undefined : { subjectaltname: c.san }), c.want);
    });
  }
  it('round-trips through identityUri', () => {
    assert.equal(identityUri({ kind: 'agent', node: 'n1' }), 'urn:tote:node:n1');
    assert.deepEqual(identityFromCertificate({ subjectaltname: `URI:${identityUri({ kind: 'agent', node: 'n1' })}` }), {
      kind: 'agent',
      node: 'n1',
    });
  });
});
