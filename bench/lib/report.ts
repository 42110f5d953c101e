// What every benchmark reports besides its figures: the machine it ran on and when, and where the figures went.
// Benchmarks print progress on stderr and, as their last stdout line, one JSON object; the same object is written to
// bench/results/<name>.json (override with TOTE_BENCH_RESULTS=<dir>).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, freemem, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const benchRoot = dirname(dirname(fileURLToPath(import.meta.url)));

export interface Machine {
  nproc: number;
  cpu_model: string;
  mem_total_gb: number;
  mem_free_gb: number;
  uname: string;
  loadavg_1m: number;
  date: string;
}

export function machine(): Machine {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown';
  return {
    nproc: cpus().length,
    cpu_model: model.trim(),
    mem_total_gb: Number((totalmem() / 2 ** 30).toFixed(1)),
    mem_free_gb: Number((freemem() / 2 ** 30).toFixed(1)),
    uname: execFileSync('uname', ['-a'], { encoding: 'utf8' }).trim(),
    loadavg_1m: Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
    date: new Date().toISOString(),
  };
}

export const logger =
  (name: string) =>
  (msg: string): void => {
    process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${name}: ${msg}\n`);
  };

/** Writes the result file and prints the JSON line (last line of stdout). */
export function report(name: string, result: Record<string, unknown>): void {
  const dir = process.env.TOTE_BENCH_RESULTS ?? join(benchRoot, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  const full = { benchmark: name, ...result, machine: machine() };
  writeFileSync(file, `${JSON.stringify(full, null, 2)}\n`);
  process.stderr.write(`${name}: results written to ${file}\n`);
  console.log(JSON.stringify(full));
}

/** Resident set size and its high-water mark of a process, from /proc (kB → MB). */
export function processMemory(pid: number): { rss_mb: number; hwm_mb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0);
  return { rss_mb: Number((kb('VmRSS') / 1024).toFixed(1)), hwm_mb: Number((kb('VmHWM') / 1024).toFixed(1)) };
}

export const seconds = (ms: number): number => Number((ms / 1000).toFixed(2));

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}
