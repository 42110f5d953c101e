// Runs an Argo CD health script with a real Lua 5.1 interpreter (Debian's lua5.1; Argo CD's gopher-lua has Lua 5.1
// semantics). Argo CD hands the script the object as the global `obj` and reads back {status, message}; so does this.
import { spawnSync } from 'node:child_process';

export const luaBinary = 'lua5.1';

export interface Health {
  status: string;
  message: string;
}

/** A JSON value as a Lua table constructor. Strings use three-digit decimal byte escapes, which every Lua 5.1 reads alike. */
export function toLuaLiteral(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'string') return luaString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `{${value.map(toLuaLiteral).join(', ')}}`;
  if (typeof value === 'object') {
    const fields = Object.entries(value as Record<string, unknown>).map(
      ([k, v]) => `[${luaString(k)}] = ${toLuaLiteral(v)}`,
    );
    return `{${fields.join(', ')}}`;
  }
  throw new Error(`no Lua form for ${typeof value}`);
}

function luaString(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  let out = '"';
  for (const byte of bytes) {
    const plain = byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c;
    // Always three digits: \\34 followed by the character 1 would read as \\341.
    out += plain ? String.fromCharCode(byte) : `\\${String(byte).padStart(3, '0')}`;
  }
  return `${out}"`;
}

/**
 * Evaluates `scriptPath` for `obj` and returns what it returned. Throws when lua5.1 is missing (hack/install-deps.sh
 * installs it) or the script fails, so a broken script is a failing test, never a skipped one.
 */
export function runHealthScript(scriptPath: string, obj: unknown): Health {
  const harness = [
    `obj = ${toLuaLiteral(obj)}`,
    `local hs = dofile(${luaString(scriptPath)})`,
    // NUL-separated: a message may hold newlines.
    'io.write(tostring(hs.status), "\\0", tostring(hs.message))',
  ].join('\n');
  const result = spawnSync(luaBinary, ['-'], { input: harness, encoding: 'utf8' });
  if (result.error) throw new Error(`${luaBinary}: ${result.error.message} (run hack/install-deps.sh)`);
  if (result.status !== 0) throw new Error(`${luaBinary} exited ${result.status}: ${result.stderr}`);
  const [status = '', message = ''] = result.stdout.split('\0');
  return { status, message };
}
