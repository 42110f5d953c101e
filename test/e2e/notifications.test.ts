// Webhook notifications from the running controller: the policy names a Secret with the receiver's URL and one with an
// HMAC key; a salvage that completes POSTs a Salvaged notification signed over its exact body.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ensureCluster, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { ensureTote } from '../support/tote.ts';
import { deployment, lostImage, policySecret, scopedPolicy, waitForRecords } from '../support/salvage.ts';

let env: ClusterEnv;

interface Received {
  body: string;
  signature: string | undefined;
  json: { kind?: string; record?: { namespace?: string; name?: string }; image?: string; targetNode?: string };
}

describe('webhook notifications', () => {
  before(async () => {
    env = await ensureCluster();
    await ensureTote(env);
  });

  it('a completed salvage sends a Salvaged notification with a valid X-Tote-Signature', async (t) => {
    const ns = await testNamespace(env, t);
    const key = 'test-hmac-key-0123456789';
    let onSalvaged: (r: Received) => void = () => {};
    const salvaged = new Promise<Received>((resolve) => (onSalvaged = resolve));
    const received: Received[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const r: Received = {
          body,
          signature: req.headers['x-tote-signature'] as string | undefined,
          json: JSON.parse(body) as Received['json'],
        };
        received.push(r);
        res.writeHead(204).end();
        if (r.json.kind === 'Salvaged' && r.json.record?.namespace === ns.name) onSalvaged(r);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/tote`;

    const urlSecretRef = await policySecret(env, ns, 'webhook-url', { url }, 'Opaque', t);
    const signingSecretRef = await policySecret(env, ns, 'webhook-key', { 'hmac-key': key }, 'Opaque', t);
    await scopedPolicy(
      env,
      ns,
      {
        notifications: {
          webhook: {
            urlSecretRef,
            signingSecretRef,
          },
        },
      },
      t,
    );
    const image = await lostImage(env, { repository: `notify/${ns.name}`, layerSize: 64 * 1024 }, ['node-a']);
    const ref = image.reference(env.sourceRegistry);
    await deployment(env, ns.name, 'app', ref, ['node-b']);

    const [record] = await waitForRecords(env, ns.name, 1, (r) => r.status?.phase === 'Completed');
    let timer: NodeJS.Timeout | undefined;
    const got = await Promise.race([
      salvaged,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(`no Salvaged notification within 30 s; got ${received.map((r) => r.json.kind).join(', ')}`),
            ),
          30_000,
        );
      }),
    ]).finally(() => clearTimeout(timer));

    assert.equal(got.json.record?.name, record?.metadata?.name);
    assert.equal(got.json.image, ref);
    assert.equal(got.json.targetNode, 'node-b');
    const expected = `sha256=${createHmac('sha256', key).update(got.body).digest('hex')}`;
    assert.ok(got.signature, 'signed');
    assert.ok(
      got.signature.length === expected.length && timingSafeEqual(Buffer.from(got.signature), Buffer.from(expected)),
      `signature ${got.signature} is the HMAC-SHA256 of the body`,
    );
  });
});
