// Exec credential plugins (client.authentication.k8s.io v1 and v1beta1): the kubeconfig names a command, which prints
// an ExecCredential with a token or a client certificate, maybe with an expiry. This is how EKS, GKE, AKS and OIDC
// helpers hand out credentials. The plugin runs non-interactively (stdin closed) with a deadline; its output is
// bounded and checked, and an error quotes its stderr, never its stdout (which carries the secret).

import { spawn } from 'node:child_process';
import { ToteError } from '../api/errors.ts';
import { processInput } from './config/options.ts';

/** The exec section of a kubeconfig user, validated. */
export interface ExecPlugin {
  readonly apiVersion: 'client.authentication.k8s.io/v1' | 'client.authentication.k8s.io/v1beta1';
  readonly command: string;
  readonly args: readonly string[];
  /** Added to the inherited environment. */
  readonly env: Readonly<Record<string, string>>;
  readonly installHint: string | undefined;
}

/** What a plugin returned. */
export interface ExecCredential {
  readonly token: string | undefined;
  readonly clientCertificate: Buffer | undefined;
  readonly clientKey: Buffer | undefined;
  /** ms since the epoch; undefined: valid until the server refuses it. */
  readonly expiresAt: number | undefined;
}

const deadlineMs = 60_000;
const maxOutputBytes = 1 << 20;

/** Runs the plugin once and parses what it printed. Failures are terminal ToteErrors naming the command. */
export async function runExecPlugin(plugin: ExecPlugin, cluster: { server: string }): Promise<ExecCredential> {
  const what = `exec credential plugin ${plugin.command}`;
  const { stdout, stderr, code, error } = await run(plugin, cluster);
  if (error) {
    const hint = (error as { code?: string }).code === 'ENOENT' && plugin.installHint ? `; ${plugin.installHint}` : '';
    throw new ToteError('terminal', 'ExecPluginFailed', `${what}: ${error.message}${hint}`, { cause: error });
  }
  if (code !== 0)
    throw new ToteError(
      'terminal',
      'ExecPluginFailed',
      `${what} exited with ${code}: ${tail(stderr) || '(no stderr)'}`,
    );
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch {
    throw new ToteError('terminal', 'ExecPluginFailed', `${what} did not print an ExecCredential (output is not JSON)`);
  }
  const bad = (why: string) => new ToteError('terminal', 'ExecPluginFailed', `${what}: ExecCredential ${why}`);
  const credential = doc as { apiVersion?: unknown; kind?: unknown; status?: Record<string, unknown> };
  if (credential.kind !== 'ExecCredential' || credential.apiVersion !== plugin.apiVersion)
    throw bad(`must have kind ExecCredential and apiVersion ${plugin.apiVersion}`);
  const status = credential.status;
  if (typeof status !== 'object' || status === null) throw bad('has no status');
  const text = (field: string) => {
    const v = status[field];
    if (v !== undefined && typeof v !== 'string') throw bad(`status.${field} must be a string`);
    return v || undefined;
  };
  const token = text('token');
  const cert = text('clientCertificateData');
  const key = text('clientKeyData');
  if (!token && !(cert && key)) throw bad('status must carry a token or both clientCertificateData and clientKeyData');
  if ((cert === undefined) !== (key === undefined))
    throw bad('status needs both clientCertificateData and clientKeyData');
  const expiry = text('expirationTimestamp');
  const expiresAt = expiry === undefined ? undefined : Date.parse(expiry);
  if (expiresAt !== undefined && Number.isNaN(expiresAt)) throw bad('status.expirationTimestamp is not RFC 3339');
  return {
    token,
    clientCertificate: cert === undefined ? undefined : Buffer.from(cert),
    clientKey: key === undefined ? undefined : Buffer.from(key),
    expiresAt,
  };
}

function run(
  plugin: ExecPlugin,
  cluster: { server: string },
): Promise<{ stdout: string; stderr: string; code: number | null; error: Error | undefined }> {
  const info = { apiVersion: plugin.apiVersion, kind: 'ExecCredential', spec: { interactive: false, cluster } };
  return new Promise((resolve) => {
    let error: Error | undefined;
    const child = spawn(plugin.command, plugin.args, {
      env: { ...processInput().env, ...plugin.env, KUBERNETES_EXEC_INFO: JSON.stringify(info) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Our own deadline, not spawn's `timeout`: that one's timer outlives a command that never started (ENOENT).
    const deadline = setTimeout(() => {
      error ??= new Error(`timed out after ${deadlineMs / 1000} s`);
      child.kill('SIGKILL');
    }, deadlineMs);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      outBytes += chunk.length;
      if (outBytes <= maxOutputBytes) out.push(chunk);
      else if (!error) {
        error = new Error(`printed more than ${maxOutputBytes} bytes`);
        child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (e) => {
      error ??= e;
      clearTimeout(deadline);
    });
    child.on('close', (code, signal) => {
      clearTimeout(deadline);
      if (!error && signal) error = new Error(`killed by ${signal}`);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        code,
        error,
      });
    });
  });
}

const tail = (text: string): string => text.trim().slice(-500);
