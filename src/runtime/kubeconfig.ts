// Where the API server is and how to prove who we are to it: a kubeconfig file (or the colon-separated $KUBECONFIG
// list, or ~/.kube/config), else the in-cluster service account. Supported credentials are the ones a production
// operator meets: client certificates (file or inline), bearer tokens (inline or a file, re-read as it rotates),
// the in-cluster projected token, and exec plugins (client.authentication.k8s.io v1/v1beta1: EKS, GKE, OIDC
// helpers). Anything else (the removed basic auth, the deprecated auth-provider entries) is refused with a message
// naming the field, rather than tried and failing obscurely on the first request.
//
// Credentials are resolved lazily and cached briefly (credentials()): files are re-read at most once a minute, an
// exec plugin runs again only as its credential nears expiry or after the server answered 401 (invalidate()).

import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ToteError } from '../api/errors.ts';
import { processInput } from './config/options.ts';
import { runExecPlugin } from './exec-credential.ts';
import type { ExecCredential, ExecPlugin } from './exec-credential.ts';

/** The environment variables the loader consults, as client-go does (tests pass their own). */
export type KubeEnvironment = Readonly<Record<string, string | undefined>>;

/** What a connection to the API server needs, resolved: TLS material and the Authorization header. */
export interface KubeCredentials {
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  /** false only for insecure-skip-tls-verify. */
  readonly verifyServer: boolean;
  /** tls-server-name: the name to verify the serving certificate against, when not the host in the URL. */
  readonly serverName: string | undefined;
  /** "Bearer ..." or undefined. */
  readonly authorization: string | undefined;
  /** Identifies the TLS material: a connection pool is reusable while this stays the same. */
  readonly tlsIdentity: string;
}

/** Bytes given inline (base64 in the file) or by path (read on every refresh, so rotation on disk is picked up). */
type Material = { readonly inline: Buffer } | { readonly file: string };

interface UserAuth {
  readonly cert: Material | undefined;
  readonly key: Material | undefined;
  readonly token: string | undefined;
  readonly tokenFile: string | undefined;
  readonly exec: ExecPlugin | undefined;
}

interface ClusterInfo {
  readonly server: string;
  readonly ca: Material | undefined;
  readonly verifyServer: boolean;
  readonly serverName: string | undefined;
}

/** How long resolved files and tokens are reused before being read again (client-go re-reads tokens every minute). */
const refreshMs = 60_000;
/** An exec credential is renewed this long before it expires, so no request carries one that lapses in flight. */
const expiryMarginMs = 30_000;

/** A loaded configuration: where the API server is and how to authenticate. Immutable but for its credential cache. */
export class KubeConfig {
  /** The API server's base URL (https://host:port, maybe with a path prefix). */
  readonly server: string;
  /** The context's namespace, or the service account's, else "default". */
  readonly namespace: string;
  /** Where this came from, for messages: a file path or "in-cluster". */
  readonly source: string;
  readonly #cluster: ClusterInfo;
  readonly #user: UserAuth;
  #cached: { credentials: KubeCredentials; until: number } | undefined;
  #pending: Promise<KubeCredentials> | undefined;

  constructor(source: string, cluster: ClusterInfo, user: UserAuth, namespace: string) {
    this.source = source;
    this.server = cluster.server.replace(/\/+$/, '');
    this.namespace = namespace;
    this.#cluster = cluster;
    this.#user = user;
  }

  /** The same credentials against another address (tests reach the API server through a proxy this way). */
  withServer(server: string): KubeConfig {
    return new KubeConfig(this.source, { ...this.#cluster, server }, this.#user, this.namespace);
  }

  /** True when a 401 may be cured by fetching the credentials again (exec plugins, token files). */
  get refreshable(): boolean {
    return this.#user.exec !== undefined || this.#user.tokenFile !== undefined;
  }

  /** Forget the cached credentials: the next call resolves them again (after a 401). */
  invalidate(): void {
    this.#cached = undefined;
  }

  /** The current credentials, from the cache while it is fresh. Concurrent callers share one resolution. */
  credentials(now = Date.now()): Promise<KubeCredentials> {
    if (this.#cached && now < this.#cached.until) return Promise.resolve(this.#cached.credentials);
    this.#pending ??= this.#resolve(now).finally(() => (this.#pending = undefined));
    return this.#pending;
  }

  async #resolve(now: number): Promise<KubeCredentials> {
    const user = this.#user;
    let exec: ExecCredential | undefined;
    if (user.exec) exec = await runExecPlugin(user.exec, { server: this.server });
    const ca = read(this.#cluster.ca, 'certificate-authority');
    const cert = exec?.clientCertificate ?? read(user.cert, 'client-certificate');
    const key = exec?.clientKey ?? read(user.key, 'client-key');
    const token = exec?.token ?? (user.tokenFile ? readToken(user.tokenFile) : user.token);
    const credentials: KubeCredentials = {
      ca,
      cert,
      key,
      verifyServer: this.#cluster.verifyServer,
      serverName: this.#cluster.serverName,
      authorization: token ? `Bearer ${token}` : undefined,
      tlsIdentity: [ca, cert, key].map((b) => b?.toString('base64') ?? '').join('|'),
    };
    let until = now + refreshMs;
    if (exec?.expiresAt !== undefined) until = Math.min(until, exec.expiresAt - expiryMarginMs);
    this.#cached = { credentials, until };
    return credentials;
  }
}

function read(material: Material | undefined, field: string): Buffer | undefined {
  if (!material) return undefined;
  if ('inline' in material) return material.inline;
  try {
    return readFileSync(material.file);
  } catch (err) {
    throw new ToteError(
      'terminal',
      'KubeconfigFileUnreadable',
      `kubeconfig ${field} ${material.file}: ${message(err)}`,
      {
        cause: err,
      },
    );
  }
}

function readToken(file: string): string {
  const token = read({ file }, 'tokenFile')!.toString('utf8').trim();
  if (!token) throw new ToteError('terminal', 'KubeconfigEmptyToken', `kubeconfig tokenFile ${file} is empty`);
  return token;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

// ─── loading ────────────────────────────────────────────────────────────────────────────────────────────────────────

/** Where the in-cluster service account's files are mounted. */
export const serviceAccountDir = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * Loads a configuration: the given file; else $KUBECONFIG (a colon-separated list, merged as kubectl does: the first
 * file to define a name or the current context wins); else ~/.kube/config when it exists; else the in-cluster
 * service account. Every problem is a terminal ToteError naming the file and field. env: the conventional discovery
 * variables (KUBECONFIG, HOME, KUBERNETES_SERVICE_HOST/PORT) every kubectl user expects; the process's by default.
 */
export function loadKubeConfig(
  file?: string,
  env: KubeEnvironment = processInput().env,
  inClusterDir = serviceAccountDir,
): KubeConfig {
  if (file) return fromFiles([file]);
  const listed = (env.KUBECONFIG ?? '').split(':').filter(Boolean);
  if (listed.length) return fromFiles(listed);
  const home = env.HOME ?? homedir();
  const standard = join(home, '.kube', 'config');
  if (existsSync(standard)) return fromFiles([standard]);
  if (env.KUBERNETES_SERVICE_HOST) return inCluster(env, inClusterDir);
  throw new ToteError(
    'terminal',
    'NoKubeconfig',
    'no Kubernetes configuration found: pass --kubeconfig, set KUBECONFIG, or run in a pod with a service account',
  );
}

/** The pod's service account: the API server's Service address, its CA, and the projected (rotating) token. */
function inCluster(env: KubeEnvironment, dir: string): KubeConfig {
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT ?? '443';
  let namespace = 'default';
  try {
    namespace = readFileSync(join(dir, 'namespace'), 'utf8').trim() || namespace;
  } catch {
    // A pod without the namespace file still talks to the API server; objects name their namespace themselves.
  }
  return new KubeConfig(
    'in-cluster',
    {
      server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
      ca: { file: join(dir, 'ca.crt') },
      verifyServer: true,
      serverName: undefined,
    },
    { cert: undefined, key: undefined, token: undefined, tokenFile: join(dir, 'token'), exec: undefined },
    namespace,
  );
}

interface Named {
  name: string;
  entry: Record<string, unknown>;
  /** The file that defined it: relative paths inside resolve against its directory. */
  file: string;
}

/** Reads and merges the files, then resolves the current context. */
function fromFiles(files: string[]): KubeConfig {
  const clusters = new Map<string, Named>();
  const users = new Map<string, Named>();
  const contexts = new Map<string, Named>();
  let current: string | undefined;
  let readAny = false;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      // kubectl skips missing entries of a $KUBECONFIG list; a file named alone must exist.
      if (files.length > 1 && (err as { code?: string }).code === 'ENOENT') continue;
      throw new ToteError('terminal', 'KubeconfigUnreadable', `kubeconfig ${file}: ${message(err)}`, { cause: err });
    }
    readAny = true;
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch (err) {
      throw new ToteError('terminal', 'KubeconfigInvalid', `kubeconfig ${file}: not YAML: ${message(err)}`, {
        cause: err,
      });
    }
    const top = asRecord(doc ?? {}, file, '(top level)');
    collect(top, 'clusters', 'cluster', file, clusters);
    collect(top, 'users', 'user', file, users);
    collect(top, 'contexts', 'context', file, contexts);
    current ??= optionalString(top, 'current-context', file) || undefined;
  }
  const where = files.join(':');
  if (!readAny) throw new ToteError('terminal', 'KubeconfigUnreadable', `kubeconfig ${where}: no such file`);
  if (!current) throw new ToteError('terminal', 'NoKubeconfig', `kubeconfig ${where} has no current-context`);
  const context = contexts.get(current);
  if (!context)
    throw new ToteError(
      'terminal',
      'KubeconfigInvalid',
      `kubeconfig ${where}: current-context "${current}" is not defined`,
    );
  const clusterName = optionalString(context.entry, 'cluster', context.file);
  const cluster = clusterName === undefined ? undefined : clusters.get(clusterName);
  if (!cluster)
    throw new ToteError(
      'terminal',
      'KubeconfigInvalid',
      `kubeconfig ${context.file}: context "${current}" names cluster "${clusterName ?? ''}", which is not defined`,
    );
  const userName = optionalString(context.entry, 'user', context.file);
  const user = userName ? users.get(userName) : undefined;
  if (userName && !user)
    throw new ToteError(
      'terminal',
      'KubeconfigInvalid',
      `kubeconfig ${context.file}: context "${current}" names user "${userName}", which is not defined`,
    );
  return new KubeConfig(
    where,
    clusterOf(cluster),
    user ? userOf(user) : { cert: undefined, key: undefined, token: undefined, tokenFile: undefined, exec: undefined },
    optionalString(context.entry, 'namespace', context.file) || 'default',
  );
}

function collect(top: Record<string, unknown>, list: string, field: string, file: string, into: Map<string, Named>) {
  const items = top[list];
  if (items === undefined || items === null) return;
  if (!Array.isArray(items)) throw invalid(file, list, 'must be a list');
  items.forEach((item, i) => {
    const record = asRecord(item, file, `${list}[${i}]`);
    const name = optionalString(record, 'name', file, `${list}[${i}].name`);
    if (!name) throw invalid(file, `${list}[${i}].name`, 'is required');
    if (!into.has(name))
      into.set(name, { name, entry: asRecord(record[field] ?? {}, file, `${list}[${i}].${field}`), file });
  });
}

function clusterOf(c: Named): ClusterInfo {
  const at = (field: string) => `cluster "${c.name}" ${field}`;
  const server = optionalString(c.entry, 'server', c.file, at('server'));
  if (!server) throw invalid(c.file, at('server'), 'is required');
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw invalid(c.file, at('server'), `"${server}" is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw invalid(c.file, at('server'), `"${server}" must be an https:// (or http://) URL`);
  if (c.entry['proxy-url'] !== undefined)
    throw invalid(c.file, at('proxy-url'), 'is not supported; reach the API server directly');
  const skip = c.entry['insecure-skip-tls-verify'];
  if (skip !== undefined && typeof skip !== 'boolean')
    throw invalid(c.file, at('insecure-skip-tls-verify'), 'must be true or false');
  return {
    server,
    ca: material(c, 'certificate-authority', at),
    verifyServer: skip !== true,
    serverName: optionalString(c.entry, 'tls-server-name', c.file, at('tls-server-name')) || undefined,
  };
}

function userOf(u: Named): UserAuth {
  const at = (field: string) => `user "${u.name}" ${field}`;
  for (const [field, why] of [
    ['auth-provider', 'is not supported (deprecated upstream); use an exec credential plugin'],
    ['username', 'is not supported (basic authentication was removed from Kubernetes)'],
    ['password', 'is not supported (basic authentication was removed from Kubernetes)'],
  ] as const)
    if (u.entry[field] !== undefined) throw invalid(u.file, at(field), why);
  const cert = material(u, 'client-certificate', at);
  const key = material(u, 'client-key', at);
  if ((cert === undefined) !== (key === undefined))
    throw invalid(
      u.file,
      at(cert ? 'client-key' : 'client-certificate'),
      'is required with the other half of the pair',
    );
  const tokenFile = optionalString(u.entry, 'tokenFile', u.file, at('tokenFile'));
  return {
    cert,
    key,
    token: optionalString(u.entry, 'token', u.file, at('token')) || undefined,
    tokenFile: tokenFile ? resolvePath(u.file, tokenFile) : undefined,
    exec: u.entry.exec === undefined ? undefined : execOf(u, at),
  };
}

function execOf(u: Named, at: (field: string) => string): ExecPlugin {
  const exec = asRecord(u.entry.exec, u.file, at('exec'));
  const apiVersion = optionalString(exec, 'apiVersion', u.file, at('exec.apiVersion'));
  if (apiVersion !== 'client.authentication.k8s.io/v1' && apiVersion !== 'client.authentication.k8s.io/v1beta1')
    throw invalid(
      u.file,
      at('exec.apiVersion'),
      `"${apiVersion ?? ''}" is not supported (client.authentication.k8s.io/v1 or v1beta1)`,
    );
  const command = optionalString(exec, 'command', u.file, at('exec.command'));
  if (!command) throw invalid(u.file, at('exec.command'), 'is required');
  const args = exec.args ?? [];
  if (!Array.isArray(args) || args.some((a) => typeof a !== 'string'))
    throw invalid(u.file, at('exec.args'), 'must be a list of strings');
  const envList = exec.env ?? [];
  if (!Array.isArray(envList)) throw invalid(u.file, at('exec.env'), 'must be a list of {name, value}');
  const env: Record<string, string> = {};
  envList.forEach((item, i) => {
    const e = asRecord(item, u.file, at(`exec.env[${i}]`));
    if (typeof e.name !== 'string' || typeof e.value !== 'string')
      throw invalid(u.file, at(`exec.env[${i}]`), 'must have string name and value');
    env[e.name] = e.value;
  });
  // A relative command with a slash is relative to the kubeconfig, as in client-go; a bare name is looked up in PATH.
  const resolved = command.includes('/') && !isAbsolute(command) ? join(dirname(u.file), command) : command;
  return {
    apiVersion,
    command: resolved,
    args: args as string[],
    env,
    installHint: optionalString(exec, 'installHint', u.file),
  };
}

/** field-data (base64) or field (a path, relative to the kubeconfig's directory). */
function material(n: Named, field: string, at: (field: string) => string): Material | undefined {
  const data = optionalString(n.entry, `${field}-data`, n.file, at(`${field}-data`));
  if (data) {
    const bytes = Buffer.from(data, 'base64');
    if (
      bytes.length === 0 ||
      bytes.toString('base64').replace(/=+$/, '') !== data.replace(/\s+/g, '').replace(/=+$/, '')
    )
      throw invalid(n.file, at(`${field}-data`), 'is not valid base64');
    return { inline: bytes };
  }
  const path = optionalString(n.entry, field, n.file, at(field));
  return path ? { file: resolvePath(n.file, path) } : undefined;
}

function resolvePath(kubeconfig: string, path: string): string {
  return isAbsolute(path) ? path : join(dirname(kubeconfig), path);
}

function asRecord(value: unknown, file: string, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(file, field, 'must be a map');
  return value as Record<string, unknown>;
}

function optionalString(record: Record<string, unknown>, key: string, file: string, field = key): string | undefined {
  const value = record[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalid(file, field, 'must be a string');
  return value;
}

function invalid(file: string, field: string, why: string): ToteError {
  return new ToteError('terminal', 'KubeconfigInvalid', `kubeconfig ${file}: ${field} ${why}`);
}
