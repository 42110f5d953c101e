// The bundle the image ships (hack/build.ts → tote.mjs and its chunks): built into a directory outside the repository,
// where no node_modules can be found, it must run on its own — every dependency inside — and answer for both commands;
// the agent, on every node, must not load the controller's code.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { repoRoot } from '../../support/cluster.ts';
import { tempDir } from '../../support/temp-dirs.ts';

const run = promisify(execFile);

describe('the shipped bundle', () => {
  it('builds to modules that run without node_modules: tote --help, tote agent --help', async () => {
    const out = tempDir('tote-bundle-');
    await run(process.execPath, [join(repoRoot, 'hack/build.ts'), '--outdir', out]);
    assert.deepEqual(readdirSync(out).sort(), ['chunks', 'tote.mjs', 'tote.mjs.map']);
    // The licences of the bundled dependencies stay beside the chunks that hold them.
    assert.ok(readdirSync(join(out, 'chunks')).some((f) => f.endsWith('.mjs.LEGAL.txt')));
    // One non-ASCII byte anywhere and V8 holds the whole source as a two-byte string: twice the heap (hack/build.ts).
    for (const file of modules(out)) {
      const source = readFileSync(join(out, file));
      const wide = source.findIndex((byte) => byte > 0x7f);
      assert.equal(wide, -1, `non-ASCII in ${file}: ${source.subarray(Math.max(0, wide - 60), wide + 20).toString()}`);
    }
    const help = await run(process.execPath, [join(out, 'tote.mjs'), '--help'], { cwd: out });
    assert.match(help.stdout, /usage: tote <command>/);
    for (const command of ['controller', 'agent', 'doctor'])
      assert.match(help.stdout, new RegExp(`^\\s+${command}\\s`, 'm'));
    const agent = await run(process.execPath, [join(out, 'tote.mjs'), 'agent', '--help'], { cwd: out });
    assert.match(agent.stdout, /--content-dir/);
  });

  it("the agent's modules leave out the controller's: no X.509 library, no reconcilers", () => {
    const out = tempDir('tote-bundle-');
    execFileSync(process.execPath, [join(repoRoot, 'hack/build.ts'), '--outdir', out]);
    const agentEntry = modules(out).find((f) => /^chunks\/agent-[^/]+\.mjs$/.test(f));
    assert.ok(agentEntry, `no agent chunk in ${modules(out).join(', ')}`);
    const loaded = importClosure(out, agentEntry);
    const controllerOnly = ['Pkcs10CertificateRequest', 'X509CertificateGenerator', 'reconcileRecord'];
    for (const file of loaded)
      for (const marker of controllerOnly)
        assert.ok(
          !readFileSync(join(out, file), 'utf8').includes(marker),
          `${file}, which the agent loads, has ${marker}`,
        );
    const everything = modules(out)
      .map((f) => readFileSync(join(out, f), 'utf8'))
      .join('\n');
    for (const marker of controllerOnly)
      assert.ok(everything.includes(marker), `${marker} is in no module: a stale marker`);
  });
});

/** The ES modules of a build, relative to it. */
function modules(out: string): string[] {
  return readdirSync(out, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.mjs'));
}

/** `file` and every module it imports statically, transitively (esbuild writes `from"./chunk-….mjs"`). */
function importClosure(out: string, file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  const source = readFileSync(join(out, file), 'utf8');
  for (const [, target] of source.matchAll(/(?:from|import)\s*"(\.\.?\/[^"]+\.mjs)"/g))
    importClosure(out, join(dirname(file), target ?? ''), seen);
  return seen;
}
