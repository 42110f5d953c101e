// skopeo as the independent client that checks what tote pushed.
import { execFile } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { RunningRegistry } from '../../support/registry-process.ts';
import { tempDir } from '../../support/temp-dirs.ts';
import { digestOfBytes } from './image-fixtures.ts';

const run = promisify(execFile);

export interface SkopeoAuth {
  readonly username: string;
  readonly password: string;
}

async function policyFile(): Promise<string> {
  const dir = tempDir('tote-skopeo-');
  const path = join(dir, 'policy.json');
  await writeFile(path, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  return path;
}

const tlsArgs = (prefix: string, registry: RunningRegistry): string[] =>
  registry.certDir !== undefined ? [`--${prefix}cert-dir`, registry.certDir] : [`--${prefix}tls-verify=false`];
const credArgs = (prefix: string, auth?: SkopeoAuth): string[] =>
  auth !== undefined ? [`--${prefix}creds`, `${auth.username}:${auth.password}`] : [];

/** `skopeo inspect --raw`: the manifest bytes exactly as the registry serves them. */
export async function inspectRaw(registry: RunningRegistry, ref: string, auth?: SkopeoAuth): Promise<Buffer> {
  const { stdout } = await run(
    'skopeo',
    [
      '--policy',
      await policyFile(),
      'inspect',
      '--raw',
      ...tlsArgs('', registry),
      ...credArgs('', auth),
      `docker://${ref}`,
    ],
    { encoding: 'buffer', maxBuffer: 16 << 20 },
  );
  return stdout;
}

/**
 * `skopeo copy --all docker://ref dir:…`: returns the digest of every file it wrote that is a blob or manifest, as
 * computed from the bytes on disk (so a registry that served other bytes than it claims would be caught).
 */
export async function copyToDir(
  registry: RunningRegistry,
  ref: string,
  auth?: SkopeoAuth,
): Promise<{ dir: string; manifestDigest: string; fileDigests: Set<string> }> {
  const dir = tempDir('tote-skopeo-copy-');
  await run(
    'skopeo',
    [
      '--policy',
      await policyFile(),
      'copy',
      '--all',
      ...tlsArgs('src-', registry),
      ...credArgs('src-', auth),
      `docker://${ref}`,
      `dir:${dir}`,
    ],
    { maxBuffer: 16 << 20 },
  );
  const fileDigests = new Set<string>();
  let manifestDigest = '';
  for (const name of await readdir(dir)) {
    if (name === 'version') continue;
    const bytes = await readFile(join(dir, name));
    const digest = digestOfBytes(bytes);
    if (name === 'manifest.json') manifestDigest = digest;
    else if (!name.endsWith('.manifest.json') && `sha256:${name}` !== digest) {
      throw new Error(`skopeo wrote ${name} whose content hashes to ${digest}`);
    }
    fileDigests.add(digest);
  }
  return { dir, manifestDigest, fileDigests };
}

/** `skopeo delete`: removes the manifest a tag points to (and so the tag). */
export async function deleteImage(registry: RunningRegistry, ref: string, auth?: SkopeoAuth): Promise<void> {
  await run('skopeo', [
    '--policy',
    await policyFile(),
    'delete',
    ...tlsArgs('', registry),
    ...credArgs('', auth),
    `docker://${ref}`,
  ]);
}
