// The krew manifest (config/krew/tote.yaml) and the archive hack/krew/archive.sh builds for it: the manifest comes out
// filled in (version of package.json, the archive's sha256), and what krew would unpack runs as kubectl's plugin.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { ensureCluster, repoRoot } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';
import { tempDir } from '../../support/temp-dirs.ts';

const run = promisify(execFile);
const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

interface KrewPlugin {
  kind: string;
  metadata: { name: string };
  spec: {
    version: string;
    platforms: { uri: string; sha256: string; bin: string; files: { from: string; to: string }[] }[];
  };
}

describe('krew: config/krew/tote.yaml and hack/krew/archive.sh', () => {
  let env: ClusterEnv;
  let out: string;
  let manifest: KrewPlugin;

  before(async () => {
    env = await ensureCluster();
    out = tempDir('tote-krew-');
    const { stdout } = await run(join(repoRoot, 'hack/krew/archive.sh'), [out], { timeout: 300_000 });
    manifest = parse(stdout) as KrewPlugin;
  });

  it('fills in the version and the sha256 of the archive it names', () => {
    assert.equal(manifest.kind, 'Plugin');
    assert.equal(manifest.metadata.name, 'tote');
    assert.equal(manifest.spec.version, `v${version}`);
    const archive = join(out, `kubectl-tote-v${version}.tar.gz`);
    const sha = createHash('sha256').update(readFileSync(archive)).digest('hex');
    for (const platform of manifest.spec.platforms) {
      assert.equal(platform.sha256, sha);
      assert.ok(platform.uri.endsWith(`/kubectl-tote-v${version}.tar.gz`), platform.uri);
    }
  });

  it('what krew installs from the manifest is the plugin kubectl runs, every command loading', async () => {
    const unpacked = tempDir('tote-krew-unpacked-');
    await run('tar', ['xzf', join(out, `kubectl-tote-v${version}.tar.gz`), '-C', unpacked]);
    // As krew does: only what the manifest's files name moves into the plugin's directory.
    const installed = tempDir('tote-krew-installed-');
    const platform = manifest.spec.platforms[0]!;
    for (const file of platform.files)
      cpSync(join(unpacked, file.from), join(installed, file.to, file.from), { recursive: true });
    const path = [installed, join(repoRoot, 'node_modules/.bin'), process.env.PATH].join(':');
    const { stdout } = await run(env.kubectl, ['tote', '--help'], { env: { ...process.env, PATH: path } });
    assert.match(stdout, /^usage: kubectl tote <command>/);
    // A command's own flags come from its chunk: the entry alone cannot print them.
    const why = await run(env.kubectl, ['tote', 'why', '--help'], { env: { ...process.env, PATH: path } });
    assert.match(why.stdout + why.stderr, /--namespace|-n\b/);
    assert.ok(readFileSync(join(installed, 'LICENSES.txt'), 'utf8').length > 0, "the bundled code's licences");
  });
});
