// Builds what the container image runs: dist/tote.mjs, with tote and every dependency it uses bundled by esbuild and
// split into chunks under dist/chunks/ that each command loads when it runs (`make build`; the Dockerfile and
// hack/image/build-offline.sh call it and copy the whole of dist/).
//
// Why a bundle and not tsc's file-per-module output plus node_modules: Node keeps every loaded module's source and
// compiled code alive, and @kubernetes/client-node alone loads ~1,500 files (every generated API and model) — 90 MB of
// RSS before the controller has done anything. Bundling drops what is never imported and starts the controller at
// roughly half the memory (docs/benchmarks.md, bench-scale), starts it faster, and leaves the image without a
// node_modules tree. Type checking is tsc's job (`make typecheck`); esbuild only strips types.
//
// Usage: node hack/build.ts [--outdir <dir>]   (default dist/)
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const at = process.argv.indexOf('--outdir');
const outdir = resolve(at > 0 ? (process.argv[at + 1] ?? 'dist') : join(root, 'dist'));

rmSync(outdir, { recursive: true, force: true });
const result = await build({
  entryPoints: { tote: join(root, 'src/cmd/tote.ts') },
  outdir,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  // Split at the command imports of src/cmd/tote.ts: `tote agent` loads its own chunks and the ones it shares, never
  // the controller's (the agent runs on every node; its idle memory is paid once per node).
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'node',
  format: 'esm',
  target: 'node24',
  sourcemap: true,
  // Node keeps the whole module source in the heap (functions compile lazily from it): comments and indentation
  // dropped, it is 3.3 instead of 5.1 MB, and ASCII only (esbuild escapes the rest; a comment it kept with one
  // non-ASCII character made it a two-byte string, 10 MB). Names are kept, so stack traces still read; the source map
  // beside it maps positions back (node --enable-source-maps).
  minifyWhitespace: true,
  minifySyntax: true,
  // Licences of bundled code stay beside it, as the node_modules tree they replace carried them.
  legalComments: 'linked',
  // Some dependencies are CommonJS and call require(); an ES module has none of its own.
  banner: {
    js: "import { createRequire as __toteRequire } from 'node:module'; const require = __toteRequire(import.meta.url);",
  },
  logLevel: 'warning',
  metafile: true,
});
const bytes = Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
console.log(`build: ${join(outdir, 'tote.mjs')} (${(bytes / 1e6).toFixed(1)} MB with source map and licences)`);
