// Test harness for the agent: a throwaway PKI made with the openssl CLI (a CA, per-identity certificates carrying
// tote's URI SANs), simulated nodes (a real containerd daemon + a real agent server on loopback), a controller-side
// client, and a TCP relay that cuts a connection after N bytes (a real network fault, for resume tests).
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import {
  connectAgent,
  generateTransferKeys,
  identityUri,
  RenewableTls,
  signTransferToken,
} from '../../../src/agentapi/index.ts';
import type { AgentClient, PeerIdentity, TlsMaterial } from '../../../src/agentapi/index.ts';
import { startAgentServer } from '../../../src/agent/index.ts';
import { tempDir } from '../../support/temp-dirs.ts';
import type { AgentServer, AgentServerOptions } from '../../../src/agent/index.ts';
import { connectContainerd } from '../../../src/containerd/index.ts';
import type { Containerd } from '../../../src/containerd/index.ts';
import { startContainerd } from '../../support/containerd-daemon.ts';
import type { ContainerdDaemon, StartOptions } from '../../support/containerd-daemon.ts';

export interface Pki {
  readonly dir: string;
  readonly ca: Buffer;
  issue(identity: PeerIdentity, name?: string): TlsMaterial;
  cleanup(): void;
}

export function makePki(): Pki {
  const dir = tempDir('tote-pki-');
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-subj',
    '/CN=tote-test-ca',
    '-days',
    '1',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  const ca = readFileSync(join(dir, 'ca.crt'));
  let serial = 0;
  return {
    dir,
    ca,
    issue(identity, name) {
      const base = name ?? `leaf-${++serial}`;
      writeFileSync(
        join(dir, `${base}.ext`),
        `subjectAltName=URI:${identityUri(identity)},DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=critical,digitalSignature\n`,
      );
      ssl('req', '-new', ...ec, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${base}`);
      ssl(
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${base}.crt`,
        '-days',
        '1',
        '-extfile',
        `${base}.ext`,
      );
      return { ca, cert: readFileSync(join(dir, `${base}.crt`)), key: readFileSync(join(dir, `${base}.key`)) };
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export interface TestNode {
  readonly name: string;
  readonly daemon: ContainerdDaemon;
  readonly containerd: Containerd;
  readonly agent: AgentServer;
  readonly registry: Registry;
  stop(): Promise<void>;
}

export interface Cluster {
  readonly pki: Pki;
  readonly keys: { privateKeyPem: string; publicKeyPem: string };
  readonly controllerTls: TlsMaterial;
  /**
   * A containerd daemon and its agent. The agent uses the daemon's content store directly, as the DaemonSet mounts
   * it; `contentApi: true` leaves it unmounted so blobs go through containerd's content API.
   */
  startNode(
    name: string,
    options?: StartOptions & Partial<AgentServerOptions> & { contentApi?: boolean },
  ): Promise<TestNode>;
  /** A controller-side client of a node's agent. */
  client(node: TestNode): AgentClient;
  token(args: {
    digest: string;
    source: string;
    target: string;
    ttlMs?: number;
    key?: string;
    issuedAt?: Date;
  }): string;
  stop(): Promise<void>;
}

export function makeCluster(): Cluster {
  const pki = makePki();
  const keys = generateTransferKeys();
  const controllerTls = pki.issue({ kind: 'controller' }, 'controller');
  const nodes: TestNode[] = [];
  const clients: AgentClient[] = [];
  return {
    pki,
    keys,
    controllerTls,
    async startNode(name, options = {}) {
      const daemon = await startContainerd({ ...options, name });
      const containerd = connectContainerd({ socket: daemon.socket });
      const registry = new Registry();
      let agent: AgentServer;
      try {
        agent = await startAgentServer({
          nodeName: name,
          containerd,
          tls: new RenewableTls(pki.issue({ kind: 'agent', node: name }, name)),
          tokenPublicKey: keys.publicKeyPem,
          listen: '127.0.0.1:0',
          registry,
          ...(options.contentApi ? {} : { contentDir: join(daemon.root, 'io.containerd.content.v1.content') }),
          ...options,
        });
      } catch (err) {
        containerd.close();
        await daemon.stop();
        throw err;
      }
      const node: TestNode = {
        name,
        daemon,
        containerd,
        agent,
        registry,
        stop: async () => {
          await agent.stop();
          containerd.close();
          await daemon.stop();
        },
      };
      nodes.push(node);
      return node;
    },
    client(node) {
      const c = connectAgent({
        address: node.agent.address,
        tls: controllerTls,
        server: { kind: 'agent', node: node.name },
      });
      clients.push(c);
      return c;
    },
    token({ digest, source, target, ttlMs = 300_000, key, issuedAt = new Date() }) {
      return signTransferToken(key ?? keys.privateKeyPem, {
        digest,
        source,
        target,
        issuedAt,
        expiresAt: new Date(issuedAt.getTime() + ttlMs),
      });
    },
    async stop() {
      for (const c of clients) c.close();
      for (const n of nodes) await n.stop();
      pki.cleanup();
    },
  };
}

/** A TCP relay to `target` that destroys each connection once `cutAfter` bytes have flowed from the target. */
export async function cuttingRelay(
  target: string,
  cutAfter: number,
): Promise<{ address: string; cuts: number; close(): Promise<void> }> {
  const [host = '127.0.0.1', port = '0'] = [
    target.slice(0, target.lastIndexOf(':')),
    target.slice(target.lastIndexOf(':') + 1),
  ];
  const sockets = new Set<Socket>();
  const state = { cuts: 0 };
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), host);
    sockets.add(client);
    sockets.add(upstream);
    let fromTarget = 0;
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      fromTarget += chunk.length;
      if (fromTarget > cutAfter) {
        state.cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay has no port');
  return {
    address: `127.0.0.1:${address.port}`,
    get cuts() {
      return state.cuts;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Everything of a node's containerd the agent could leave behind, for "left clean" assertions; with `daemon`, also
 * the files in its content store (blob files and tote's staging files).
 */
export async function snapshot(
  c: Containerd,
  daemon?: ContainerdDaemon,
): Promise<{ content: string[]; ingests: string[]; leases: string[]; images: string[]; files?: string[] }> {
  return {
    content: (await c.content.list()).map((i) => i.digest).sort(),
    ingests: (await c.content.listIngests()).map((s) => s.ref).sort(),
    leases: (await c.leases.list()).map((l) => l.id).sort(),
    images: (await c.images.list()).map((i) => i.name).sort(),
    ...(daemon ? { files: contentFiles(join(daemon.root, 'io.containerd.content.v1.content')) } : {}),
  };
}

function contentFiles(root: string): string[] {
  const list = (dir: string) =>
    existsSync(join(root, dir)) ? readdirSync(join(root, dir)).map((f) => `${dir}/${f}`) : [];
  return [...list('blobs/sha256'), ...list('tote-staging')].sort();
}

/** Counter value from a prom-client registry. */
export async function counter(registry: Registry, name: string): Promise<number> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`no metric ${name}`);
  const { values } = await metric.get();
  return values.reduce((sum, v) => sum + v.value, 0);
}
