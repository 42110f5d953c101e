// Starts a standalone, real containerd daemon for one test: its own root, state and socket under a temp directory, a
// version 2 config with only the plugins the test needs, and a stop() that kills it (and any shim it started),
// unmounts whatever it left under its directories and removes them. Stands alone: it does not need the local cluster.
//
// Binaries: Debian's /usr/bin/containerd (1.6) by default; `containerdV2Binary()` finds the 2.x build of
// hack/containerd/build.sh in the cache, and fails when there is none.
import { spawn, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
  closeSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { connectContainerd } from '../../src/containerd/index.ts';

export interface ContainerdDaemon {
  /** Socket path (no scheme). */
  readonly socket: string;
  /** Directory holding root/, state/, config.toml and containerd.log. */
  readonly dir: string;
  readonly root: string;
  readonly version: string;
  readonly binary: string;
  readonly criEnabled: boolean;
  /** The ctr built with this containerd when there is one (2.x), else Debian's. */
  readonly ctr: string;
  /** The daemon's log so far (for assertion messages). */
  log(): string;
  /** Kills the daemon and its shims, unmounts and removes its directories. Idempotent. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** containerd binary; default /usr/bin/containerd. */
  readonly binary?: string;
  /** Load the CRI plugin (needed for ImageStatus checks and running containers). Default false. */
  readonly cri?: boolean;
  /** Prefix of the temp directory, for reading logs after a failure. */
  readonly name?: string;
  /** Milliseconds to wait for the socket to answer Version. */
  readonly startTimeoutMs?: number;
}

/**
 * The 2.x containerd built by hack/containerd/build.sh (`make deps` builds it). Throws when the cache holds none: the
 * version matrix fails loudly instead of quietly shrinking to 1.6.
 */
export function containerdV2Binary(): string | undefined {
  const cache = process.env.TOTE_CACHE ?? join(homedir(), '.cache', 'tote');
  const bin = join(cache, 'bin');
  const builds = existsSync(bin)
    ? readdirSync(bin)
        .filter((d) => /^containerd-v2\.\d+\.\d+$/.test(d) && existsSync(join(bin, d, 'containerd')))
        .sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))
    : [];
  const newest = builds.at(-1);
  if (newest === undefined)
    throw new Error(`containerd 2.x is not built under ${bin}: run hack/containerd/build.sh (or make deps)`);
  return join(bin, newest, 'containerd');
}

let overlaySupported: boolean | undefined;

/** Whether overlay mounts work here (some sandboxes refuse them); containerd's CRI then needs the native snapshotter. */
function overlayWorks(): boolean {
  if (overlaySupported !== undefined) return overlaySupported;
  const dir = mkdtempSync(join(tmpdir(), 'tote-ovl-'));
  for (const d of ['l', 'u', 'w', 'm']) mkdirSync(join(dir, d));
  try {
    execFileSync(
      'mount',
      ['-t', 'overlay', 'overlay', '-o', `lowerdir=${dir}/l,upperdir=${dir}/u,workdir=${dir}/w`, `${dir}/m`],
      {
        stdio: 'ignore',
      },
    );
    execFileSync('umount', [`${dir}/m`], { stdio: 'ignore' });
    overlaySupported = true;
  } catch {
    overlaySupported = false;
  }
  rmSync(dir, { recursive: true, force: true });
  return overlaySupported;
}

function configToml(dir: string, cri: boolean): string {
  const snapshotter = overlayWorks() ? 'overlayfs' : 'native';
  const disabled = [
    // Not needed by any test, and some write outside the temp directories.
    'io.containerd.internal.v1.opt',
    'io.containerd.snapshotter.v1.btrfs',
    'io.containerd.snapshotter.v1.zfs',
    'io.containerd.snapshotter.v1.devmapper',
    'io.containerd.snapshotter.v1.aufs',
    'io.containerd.tracing.processor.v1.otlp',
    'io.containerd.internal.v1.tracing',
    ...(cri ? [] : ['io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.images', 'io.containerd.cri.v1.runtime']),
  ];
  const lines = [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    `disabled_plugins = [${disabled.map((p) => `"${p}"`).join(', ')}]`,
    '[grpc]',
    `  address = "${dir}/containerd.sock"`,
    '[ttrpc]',
    `  address = "${dir}/containerd.sock.ttrpc"`,
    '[debug]',
    '  level = "info"',
    '[plugins."io.containerd.gc.v1.scheduler"]',
    // Collect right after every deletion, so "after GC" tests observe a collected store (default 100 ms anyway).
    '  deletion_threshold = 1',
  ];
  if (cri) {
    lines.push(
      '[plugins."io.containerd.grpc.v1.cri"]',
      '  restrict_oom_score_adj = true',
      '  disable_cgroup = false',
      '  enable_selinux = false',
      `  sandbox_image = "registry.invalid/pause:3.9"`,
      '  [plugins."io.containerd.grpc.v1.cri".containerd]',
      `    snapshotter = "${snapshotter}"`,
      '    default_runtime_name = "runc"',
      '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      '      runtime_type = "io.containerd.runc.v2"',
      '  [plugins."io.containerd.grpc.v1.cri".cni]',
      `    bin_dir = "${dir}/cni/bin"`,
      `    conf_dir = "${dir}/cni/conf"`,
    );
  }
  return lines.join('\n') + '\n';
}

/** Starts a daemon and waits until its socket answers Version. */
export async function startContainerd(options: StartOptions = {}): Promise<ContainerdDaemon> {
  const binary = options.binary ?? '/usr/bin/containerd';
  const cri = options.cri ?? false;
  // Short prefix: the socket path must stay under the 108-byte unix limit.
  const dir = mkdtempSync(join(tmpdir(), `ctd-${options.name ?? 'test'}-`));
  mkdirSync(join(dir, 'cni', 'bin'), { recursive: true });
  mkdirSync(join(dir, 'cni', 'conf'), { recursive: true });
  const config = join(dir, 'config.toml');
  writeFileSync(config, configToml(dir, cri));
  const logPath = join(dir, 'containerd.log');
  const logFd = openSync(logPath, 'a');
  // The daemon finds its shim on PATH: the one built beside a 2.x binary must win over Debian's 1.6 shim.
  const binDir = dirname(binary);
  const child: ChildProcess = spawn(binary, ['--config', config], {
    stdio: ['ignore', logFd, logFd],
    env: { ...process.env, PATH: `${binDir}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` },
  });
  closeSync(logFd);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const socket = join(dir, 'containerd.sock');
  const log = () => (existsSync(logPath) ? readFileSync(logPath, 'utf8') : '');

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    killShims(socket);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    unmountUnder(dir);
    rmSync(dir, { recursive: true, force: true });
  };

  const client = connectContainerd({ socket });
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  let version: string | undefined;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`containerd exited with ${child.exitCode}:\n${log()}`);
      try {
        if (existsSync(socket)) {
          version = (await client.version({ timeoutMs: 1_000 })).version;
          break;
        }
      } catch {
        // not serving yet
      }
      if (Date.now() > deadline) throw new Error(`containerd did not answer on ${socket} in time:\n${log()}`);
      await new Promise((r) => setTimeout(r, 50)); // polling interval while waiting for the socket, with a deadline
    }
  } catch (err) {
    await stop();
    throw err;
  } finally {
    client.close();
  }
  const ctr = existsSync(join(binDir, 'ctr')) ? join(binDir, 'ctr') : 'ctr';
  return { socket, dir, root: join(dir, 'root'), version: version ?? '', binary, criEnabled: cri, ctr, log, stop };
}

/** Kills containerd-shim processes started for this daemon (their command line names its socket). */
function killShims(socket: string): void {
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmdline.includes('containerd-shim') && cmdline.split('\0').includes(socket)) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
}

/** Unmounts everything mounted below `dir`, deepest first. */
function unmountUnder(dir: string): void {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
}
