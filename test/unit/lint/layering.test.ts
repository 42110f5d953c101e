// The layering of src/ is a lint rule; this proves the rule fires (and stays quiet for allowed imports), so a
// refactor of eslint.config.js cannot silently drop it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ESLint } from 'eslint';

const root = join(import.meta.dirname, '../../..');
const eslint = new ESLint({ cwd: root });

async function restrictedImports(file: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(source, { filePath: join(root, file) });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('src/ layering rule', () => {
  const cases: { from: string; imports: string; allowed: boolean }[] = [
    { from: 'src/api/x.ts', imports: '../runtime/logging.ts', allowed: false },
    { from: 'src/runtime/x.ts', imports: '../controller/manager.ts', allowed: false },
    { from: 'src/runtime/x.ts', imports: '../api/index.ts', allowed: true },
    { from: 'src/registry/x.ts', imports: '../containerd/client.ts', allowed: false },
    { from: 'src/controller/x.ts', imports: '../agent/server.ts', allowed: false },
    { from: 'src/controller/x.ts', imports: '../containerd/client.ts', allowed: false },
    { from: 'src/controller/x.ts', imports: '../registry/resolve.ts', allowed: true },
    { from: 'src/agent/x.ts', imports: '../controller/reconciler.ts', allowed: false },
    { from: 'src/agent/x.ts', imports: '../containerd/client.ts', allowed: true },
    { from: 'src/cmd/x.ts', imports: '../controller/manager.ts', allowed: true },
    { from: 'src/api/x.ts', imports: '../../generated/api/v1alpha1.ts', allowed: true },
    { from: 'src/containerd/x.ts', imports: '../grpc/errors.ts', allowed: true },
    { from: 'src/agentapi/x.ts', imports: '../grpc/wire.ts', allowed: true },
    { from: 'src/grpc/x.ts', imports: '../containerd/client.ts', allowed: false },
    { from: 'src/registry/x.ts', imports: '../grpc/wire.ts', allowed: false },
    { from: 'src/agentapi/x.ts', imports: '../../generated/proto/tote/agent/v1/agent.ts', allowed: true },
  ];
  for (const c of cases) {
    it(`${c.allowed ? 'allows' : 'refuses'} ${c.from} → ${c.imports}`, async () => {
      const messages = await restrictedImports(c.from, `import { a } from '${c.imports}';\nexport const b = a;\n`);
      assert.equal(messages.length === 0, c.allowed, messages.join('; '));
    });
  }
});
