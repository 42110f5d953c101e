// The bundle the image ships (hack/build.ts → tote.mjs): built into a directory outside the repository, where no
// node_modules can be found, it must run on its own — every dependency inside — and answer for both commands.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, it } from 'node:test';
import { repoRoot } from '../../support/cluster.ts';
import { tempDir } from '../../support/temp-dirs.ts';

const run = promisify(execFile);

describe('the shipped bundle', () => {
  it('builds to one module that runs without node_modules: tote --help, tote agent --help', async () => {
    const out = tempDir('tote-bundle-');
    await run(process.execPath, [join(repoRoot, 'hack/build.ts'), '--outdir', out]);
    assert.deepEqual(readdirSync(out).sort(), ['tote.mjs', 'tote.mjs.LEGAL.txt', 'tote.mjs.map']);
    // One non-ASCII byte anywhere and V8 holds the whole source as a two-byte string: twice the heap (hack/build.ts).
    const source = readFileSync(join(out, 'tote.mjs'));
    const wide = source.findIndex((byte) => byte > 0x7f);
    assert.equal(wide, -1, `non-ASCII in the bundle: ${source.subarray(Math.max(0, wide - 60), wide + 20).toString()}`);
    const help = await run(process.execPath, [join(out, 'tote.mjs'), '--help'], { cwd: out });
    assert.match(help.stdout, /usage: tote <command>/);
    for (const command of ['controller', 'agent', 'doctor'])
      assert.match(help.stdout, new RegExp(`^\\s+${command}\\s`, 'm'));
    const agent = await run(process.execPath, [join(out, 'tote.mjs'), 'agent', '--help'], { cwd: out });
    assert.match(agent.stdout, /--content-dir/);
  });
});
