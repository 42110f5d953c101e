// Starts real OCI registries (Debian's docker-registry, i.e. docker/distribution 2.8) for tests and the cluster
// harness: a free 127.0.0.1 port, a temporary storage directory, a generated config, optional htpasswd auth, optional
// TLS with a test CA (made with the openssl CLI; Node cannot create certificates), optional token auth. start…()
// resolves once /v2/ answers; stop() kills the process and waits for it to exit.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './temp-dirs.ts';

const run = promisify(execFile);

export const registryBinary = process.env.TOTE_REGISTRY_BINARY ?? '/usr/bin/docker-registry';

/** A test certificate authority on disk. */
export interface TestCa {
  readonly dir: string;
  /** PEM of the CA certificate. */
  readonly certPem: string;
  readonly certPath: string;
  readonly keyPath: string;
  /** Issues a server certificate for the given DNS names and IPs; returns PEM paths and contents. */
  issue(name: string, sans?: { dns?: string[]; ips?: string[] }): Promise<IssuedCert>;
}

export interface IssuedCert {
  readonly certPath: string;
  readonly keyPath: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** Creates a CA (EC P-256) in a new directory under `parent` (a temp dir when omitted). */
export async function createTestCa(parent?: string): Promise<TestCa> {
  const dir = tempDir('tote-ca-', parent);
  const keyPath = join(dir, 'ca.key');
  const certPath = join(dir, 'ca.crt');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=tote test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]); // prettier-ignore
  const certPem = await readFile(certPath, 'utf8');
  let serial = 1;
  return {
    dir,
    certPem,
    certPath,
    keyPath,
    async issue(name, sans = { dns: ['localhost'], ips: ['127.0.0.1'] }) {
      const base = join(dir, name);
      const ext = join(dir, `${name}.ext`);
      const alt = [...(sans.dns ?? []).map((d) => `DNS:${d}`), ...(sans.ips ?? []).map((i) => `IP:${i}`)].join(',');
      await writeFile(
        ext,
        `subjectAltName=${alt}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n`,
      );
      await run('openssl', [
        'req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${name}`,
      ]); // prettier-ignore
      await run('openssl', [
        'x509', '-req', '-in', `${base}.csr`, '-CA', certPath, '-CAkey', keyPath, '-set_serial', String(++serial),
        '-days', '2', '-extfile', ext, '-out', `${base}.crt`,
      ]); // prettier-ignore
      return {
        certPath: `${base}.crt`,
        keyPath: `${base}.key`,
        certPem: await readFile(`${base}.crt`, 'utf8'),
        keyPem: await readFile(`${base}.key`, 'utf8'),
      };
    },
  };
}

/** Token authentication settings (docker/distribution `auth.token`). */
export interface TokenAuthConfig {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** PEM file with the certificate(s) whose keys sign tokens. */
  readonly rootCertBundle: string;
}

export interface RegistryProcessOptions {
  /** Users for htpasswd (bcrypt) auth. */
  readonly users?: ReadonlyArray<{ readonly username: string; readonly password: string }>;
  /** Serve TLS with a certificate from this CA (for 127.0.0.1 and localhost). */
  readonly ca?: TestCa;
  readonly tokenAuth?: TokenAuthConfig;
  /** Deadline for the registry to answer /v2/; default 20s. */
  readonly startTimeoutMs?: number;
}

/** A running registry. */
export interface RunningRegistry {
  /** `127.0.0.1:port`: use as the domain of references. */
  readonly host: string;
  readonly port: number;
  /** `https://127.0.0.1:port` or `http://…`. */
  readonly url: string;
  readonly tls: boolean;
  /** Working directory (config, storage, htpasswd). */
  readonly dir: string;
  /** A directory in skopeo's --cert-dir layout (ca.crt) when TLS is on. */
  readonly certDir?: string;
  /** The CA's PEM when TLS is on. */
  readonly caPem?: string;
  /** Everything the process printed, for failure messages. */
  output(): string;
  /** Kills the process, waits for it, removes the directory. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (released before returning; the short race is retried by startRegistry). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts a docker-registry process. */
export async function startRegistry(options: RegistryProcessOptions = {}): Promise<RunningRegistry> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOnce(options: RegistryProcessOptions): Promise<RunningRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'tote-registry-'));
  const port = await freePort();
  const config: Record<string, unknown> = {
    version: 0.1,
    log: { level: 'warn', accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: join(dir, 'storage') }, delete: { enabled: true } },
    http: { addr: `127.0.0.1:${port}`, secret: 'tote-test-secret' },
  };
  let certDir: string | undefined;
  if (options.ca !== undefined) {
    const cert = await options.ca.issue(`registry-${port}`);
    (config.http as Record<string, unknown>).tls = { certificate: cert.certPath, key: cert.keyPath };
    certDir = join(dir, 'certs');
    await mkdir(certDir);
    await writeFile(join(certDir, 'ca.crt'), options.ca.certPem);
  }
  if (options.users !== undefined && options.tokenAuth !== undefined) {
    throw new Error('startRegistry: choose htpasswd users or token auth, not both');
  }
  if (options.users !== undefined) {
    const htpasswd = join(dir, 'htpasswd');
    const lines: string[] = [];
    for (const user of options.users) {
      const { stdout } = await run('htpasswd', ['-Bbn', user.username, user.password]);
      lines.push(stdout.trim());
    }
    await writeFile(htpasswd, `${lines.join('\n')}\n`);
    config.auth = { htpasswd: { realm: 'tote-test', path: htpasswd } };
  }
  if (options.tokenAuth !== undefined) {
    const t = options.tokenAuth;
    config.auth = {
      token: { realm: t.realm, service: t.service, issuer: t.issuer, rootcertbundle: t.rootCertBundle },
    };
  }
  // JSON is YAML: no YAML writer needed.
  const configPath = join(dir, 'config.yml');
  await writeFile(configPath, JSON.stringify(config, null, 2));

  const child = spawn(registryBinary, ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = once(child, 'exit');
  const tls = options.ca !== undefined;
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const stop = async () => {
    await killAndWait(child, exited);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForV2(url, options.ca?.certPem, options.startTimeoutMs ?? 20_000, child, () => output);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    url,
    tls,
    dir,
    ...(certDir !== undefined ? { certDir } : {}),
    ...(options.ca !== undefined ? { caPem: options.ca.certPem } : {}),
    output: () => output,
    stop,
  };
}

async function killAndWait(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** Polls GET /v2/ until any HTTP answer (200, or 401 with auth) or the deadline. */
async function waitForV2(
  url: string,
  ca: string | undefined,
  timeoutMs: number,
  child: ChildProcess,
  output: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}):\n${output()}`);
    const answered = await new Promise<boolean>((resolve) => {
      const mod = url.startsWith('https') ? https : http;
      const req = mod.get(`${url}/v2/`, { ...(ca !== undefined ? { ca } : {}), timeout: 1_000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(false));
    });
    if (answered) return;
    if (Date.now() > deadline)
      throw new Error(`docker-registry did not answer ${url}/v2/ in ${timeoutMs}ms:\n${output()}`);
    // Polling interval of a readiness probe, not synchronisation: the loop exits on the condition.
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 250);
  }
}
