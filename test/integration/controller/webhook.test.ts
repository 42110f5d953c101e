// Webhook delivery against a real HTTP server on loopback: signature, retries, timeouts, refusals.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { deliver, sign } from '../../../src/controller/notify/webhook.ts';
import type { Notification } from '../../../src/controller/notify/webhook.ts';

const notification: Notification = {
  kind: 'Salvaged',
  message: 'salvaged',
  record: { namespace: 'team', name: 'r' },
  image: 'registry.example.com/app:1',
  targetNode: 'node-b',
  time: '2026-11-22T10:00:00.000Z',
};
const noWait = { delay: async () => {} };

describe('webhook delivery', () => {
  let server: Server;
  let url: string;
  const received: { path: string; body: string; signature: string | undefined }[] = [];
  let respond: (req: IncomingMessage, res: ServerResponse, n: number) => void = (_q, res) => res.end();

  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({
          path: req.url ?? '',
          body: Buffer.concat(chunks).toString(),
          signature: req.headers['x-tote-signature'] as string | undefined,
        });
        respond(req, res, received.length);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook?token=secret-token`;
  });
  after(() => server.close());

  it('POSTs the JSON with an HMAC signature of the exact body', async () => {
    received.length = 0;
    respond = (_q, res) => res.writeHead(204).end();
    const key = Buffer.from('hmac-key');
    await deliver({ url, signingKey: key, timeoutMs: 2000 }, notification, noWait);
    assert.equal(received.length, 1);
    const got = received[0];
    assert.equal(JSON.parse(got?.body ?? '{}').kind, 'Salvaged');
    assert.equal(got?.signature, sign(got?.body ?? '', key));
  });

  it('retries a 503 and succeeds on the next attempt', async () => {
    received.length = 0;
    respond = (_q, res, n) => res.writeHead(n === 1 ? 503 : 200).end();
    await deliver({ url, timeoutMs: 2000 }, notification, noWait);
    assert.equal(received.length, 2);
  });

  it('does not retry a 400, and the error names the host but never the URL token', async () => {
    received.length = 0;
    respond = (_q, res) => res.writeHead(400).end();
    await assert.rejects(deliver({ url, timeoutMs: 2000 }, notification, noWait), (err: Error) => {
      assert.match(err.message, /HTTP 400/);
      assert.doesNotMatch(err.message, /secret-token/);
      return true;
    });
    assert.equal(received.length, 1);
  });

  it('gives up after the attempts when the receiver hangs, within the timeouts', async () => {
    received.length = 0;
    respond = () => {}; // never answers
    const started = Date.now();
    await assert.rejects(deliver({ url, timeoutMs: 200 }, notification, { ...noWait, attempts: 2 }), /timed out/);
    assert.equal(received.length, 2);
    assert.ok(Date.now() - started < 5000);
  });
});
