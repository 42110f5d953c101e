// The CLI installed the way TypeScript tools are: `npm pack` (its prepack builds the bundle) makes a package holding the
// bundle and nothing of the source tree; `npm install --global` of that file puts `tote` and `kubectl-tote` on PATH;
// both run, kubectl finds the plugin, and `tote doctor` reaches the local cluster, from outside the repository.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { before, describe, it } from 'node:test';
import type { CheckRow } from '../../../src/cmd/doctor.ts';
import { ensureCluster, repoRoot } from '../../support/cluster.ts';
import type { ClusterEnv } from '../../support/cluster.ts';
import { tempDir } from '../../support/temp-dirs.ts';

const run = promisify(execFile);
const { version } = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };

describe('the npm package', () => {
  let env: ClusterEnv;
  let prefix: string;
  let tarball: string;
  /** Node.js 24 first (the engines field), then the installed commands, then the machine's PATH. */
  const path = () => [join(repoRoot, 'node_modules/.bin'), join(prefix, 'bin'), process.env.PATH].join(':');
  const runInstalled = (command: string, args: string[]) =>
    run(join(prefix, 'bin', command), args, {
      cwd: prefix,
      env: { ...process.env, PATH: path(), KUBECONFIG: env.kubeconfig },
      timeout: 60_000,
    });

  before(async () => {
    env = await ensureCluster();
    const packed = tempDir('tote-pack-');
    prefix = tempDir('tote-prefix-');
    const npmEnv = { ...process.env, PATH: [join(repoRoot, 'node_modules/.bin'), process.env.PATH].join(':') };
    await run('npm', ['pack', '--pack-destination', packed], { cwd: repoRoot, env: npmEnv, timeout: 300_000 });
    tarball = join(packed, `tote-${version}.tgz`);
    // --prefer-offline: should the package ever declare dependencies again, npm ci has already fetched them.
    await run(
      'npm',
      ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball],
      { cwd: prefix, env: npmEnv, timeout: 300_000 },
    );
  });

  it('holds the bundle, its chunks, maps and licences, the README and package.json: no source, tests or configs', async () => {
    const { stdout } = await run('tar', ['tzf', tarball]);
    const entries = stdout.trim().split('\n').sort();
    for (const required of [
      'package/README.md',
      'package/dist/tote.mjs',
      'package/dist/tote.mjs.map',
      'package/package.json',
    ])
      assert.ok(entries.includes(required), `${required} missing from ${entries.join(', ')}`);
    // Besides those, only the bundle's chunks, their maps and the licences of what they hold (hack/build.ts).
    const others = entries.filter((e) => !['package/README.md', 'package/package.json'].includes(e));
    for (const entry of others) assert.match(entry, /^package\/dist\/(chunks\/)?[\w-]+\.mjs(\.map|\.LEGAL\.txt)?$/);
    assert.ok(
      others.some((e) => e.endsWith('.LEGAL.txt')),
      'no licences in the package',
    );
  });

  it('declares no dependencies, so the install fetches nothing: the bundle carries them', async () => {
    const manifest = JSON.parse(
      (await run('tar', ['xzf', tarball, '-O', 'package/package.json'], { maxBuffer: 1 << 20 })).stdout,
    ) as { dependencies?: Record<string, string> };
    assert.deepEqual(manifest.dependencies ?? {}, {});
    assert.deepEqual(readdirSync(join(prefix, 'lib/node_modules/tote')).sort(), ['README.md', 'dist', 'package.json']);
  });

  it('installs tote and kubectl-tote, both the bundle', async () => {
    assert.deepEqual(readdirSync(join(prefix, 'bin')).sort(), ['kubectl-tote', 'tote']);
    const tote = await runInstalled('tote', ['--help']);
    assert.match(tote.stdout, /^usage: tote <command>/);
    const plugin = await runInstalled('kubectl-tote', ['--help']);
    assert.match(plugin.stdout, /^usage: kubectl tote <command>/);
  });

  it('kubectl runs the installed plugin against the cluster', async () => {
    const { stdout } = await run(env.kubectl, ['tote', 'status', '-o', 'json'], {
      env: { ...process.env, PATH: path(), KUBECONFIG: env.kubeconfig },
      timeout: 60_000,
    });
    const report = JSON.parse(stdout) as { agents: { node: string }[] };
    assert.deepEqual(report.agents.map((a) => a.node).sort(), [...env.nodes].sort());
  });

  it('tote doctor reaches the API server and finds the CRDs', async () => {
    // doctor exits 1 when tote itself is not running here; its rows are what this test reads.
    const result = await runInstalled('tote', ['doctor', '--output=json']).catch(
      (err: { stdout?: string; code?: number }) => ({ stdout: err.stdout ?? '', code: err.code }),
    );
    const rows = JSON.parse(result.stdout) as CheckRow[];
    const verdict = (check: string) => rows.find((r) => r.check === check)?.verdict;
    assert.equal(verdict('API server'), 'ok');
    assert.equal(verdict('CRD salvagepolicies.tote.dev'), 'ok');
    assert.equal(verdict('CRD salvagerecords.tote.dev'), 'ok');
  });

  it('carries the version of package.json', async () => {
    const { stdout } = await run('npm', ['ls', '--global', '--prefix', prefix, '--json', '--depth=0']);
    assert.equal(
      (JSON.parse(stdout) as { dependencies: { tote: { version: string } } }).dependencies.tote.version,
      version,
    );
  });
});
