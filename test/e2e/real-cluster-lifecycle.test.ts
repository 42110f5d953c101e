// Real nodes come up quickly and leave nothing behind, even when every process of the cluster was SIGKILLed and its
// pid files are gone. Runs a cluster of its own (<TOTE_REAL_CLUSTER_DIR>-lifecycle) beside the other real-kubelet stories', and checks
// the host with its own tools (/proc, ip, iptables-save, sysctl, the cgroup tree), not through the harness.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { readClusterEnv, repoRoot } from '../support/cluster.ts';
import { buildImage, pushImage, registries } from '../support/images.ts';
import { realClusterContainerd, realClusterDir } from '../support/real-cluster.ts';
import { apply } from '../support/salvage.ts';
import { waitForPodReady } from '../support/wait.ts';

const run = promisify(execFile);
const dir = `${realClusterDir}-lifecycle`;
const tag = createHash('sha256').update(dir).digest('hex').slice(0, 4);
const clusterEnv = {
  ...process.env,
  TOTE_CLUSTER_DIR: dir,
  TOTE_KUBELET: 'real',
  TOTE_CONTAINERD: realClusterContainerd,
};
const script = (name: string) => run(join(repoRoot, 'hack/cluster', name), [], { env: clusterEnv, timeout: 600_000 });
const kernelSettings = ['kernel.panic', 'kernel.panic_on_oops', 'vm.overcommit_memory'];

async function sysctls(): Promise<string[]> {
  const { stdout } = await run('sysctl', kernelSettings);
  return stdout
    .trim()
    .split('\n')
    .map((l) => l.replace(' = ', '='));
}

/**
 * The shims' sockets, named by a hash, in containerd's fixed directory /run/containerd/s: the host's, or with `node`
 * that node's own (its mount namespace has nodes/<node>/run-containerd at /run/containerd).
 */
function shimSockets(node?: string): string[] {
  const where = node ? join(dir, 'nodes', node, 'run-containerd', 's') : '/run/containerd/s';
  return existsSync(where) ? readdirSync(where).map((f) => join(where, f)) : [];
}

/** Host iptables rules without counters and comments (the kubelets' chains must stay inside node namespaces). */
async function hostIptables(): Promise<string> {
  const { stdout } = await run('iptables-save');
  return stdout
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/g, ''))
    .join('\n');
}

/**
 * Pids whose command line names the state directory, or that sit in one of the cluster's cgroup roots. Zombies do not
 * count: killed containers re-parent to PID 1, whose job reaping them is (this machine's init does it lazily).
 */
function clusterProcesses(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const cgroups = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      if (cmdline.includes(`${dir}/`) || cgroups.includes(`/tote-${tag}-`)) out.push(`${pid} ${cmdline}`);
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

async function leftovers(): Promise<string[]> {
  const found: string[] = [];
  const netns = (await run('ip', ['netns', 'list'])).stdout;
  found.push(...netns.split('\n').filter((l) => l.startsWith(`tote-${tag}-`)));
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout;
  found.push(...links.split('\n').filter((l) => l.includes(`: tb${tag}`) || l.includes(`: tv${tag}`)));
  // cgroup v1: /sys/fs/cgroup/<hierarchy>/tote-<tag>-<node>; v2: /sys/fs/cgroup/tote-<tag>-<node>.
  for (const top of readdirSync('/sys/fs/cgroup', { withFileTypes: true }).filter((e) => e.isDirectory())) {
    if (top.name.startsWith(`tote-${tag}-`)) found.push(`cgroup ${top.name}`);
    for (const entry of readdirSync(join('/sys/fs/cgroup', top.name)).filter((e) => e.startsWith(`tote-${tag}-`)))
      found.push(`cgroup ${top.name}/${entry}`);
  }
  found.push(
    ...readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(`${dir}/`)),
  );
  found.push(...clusterProcesses().map((p) => `process ${p}`));
  if (existsSync(dir)) found.push(`directory ${dir}`);
  return found;
}

describe('real-node cluster lifecycle', () => {
  it('three real nodes are Ready within 60 s (warm); after a crash cluster-down leaves nothing behind', async (t) => {
    t.after(() => script('down.sh').then(() => undefined));
    const originals = existsSync('/run/tote-real-nodes/sysctls')
      ? readFileSync('/run/tote-real-nodes/sysctls', 'utf8').trim().split('\n')
      : await sysctls();
    const iptablesBefore = await hostIptables();

    const began = Date.now();
    await script('up.sh');
    const upMs = Date.now() - began;
    assert.ok(upMs < 60_000, `cluster-up took ${upMs} ms`);
    const env = readClusterEnv(join(dir, 'env'));
    assert.equal(env.kubelet, 'real');

    // A running container per node, so the crash leaves containers, shims, sandboxes and pod namespaces behind.
    const image = buildImage({ repository: 'e2e/lifecycle', layers: 1, command: ['sh', '-c', 'exec sleep 3600'] });
    await pushImage(registries(env).source, image);
    for (const node of env.nodes)
      await apply(env, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `sleeper-${node}`, namespace: 'default' },
        spec: {
          nodeName: node,
          terminationGracePeriodSeconds: 0,
          containers: [{ name: 'c', image: image.reference(env.sourceRegistry) }],
        },
      });
    for (const node of env.nodes) await waitForPodReady(env, 'default', `sleeper-${node}`, { timeoutMs: 60_000 });

    // The pods' network namespaces, told apart from other clusters' by their addresses while they are alive.
    const octet = /octet=(\d+)/.exec(readFileSync(join(dir, 'network'), 'utf8'))?.[1];
    const podNetns: string[] = [];
    for (const ns of (await run('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '')) {
      if (!ns.startsWith('cni-')) continue;
      const addresses = (await run('ip', ['-n', ns, '-4', '-o', 'addr', 'show'])).stdout;
      if (addresses.includes(` 10.${octet}.`)) podNetns.push(ns);
    }
    assert.equal(podNetns.length, env.nodes.length, 'one pod network namespace per running pod');

    // Sockets of the shims started for those pods: in each node's own /run/containerd/s, none in the host's.
    const ourShimSockets = env.nodes.flatMap((node) => shimSockets(node));
    assert.ok(
      ourShimSockets.length >= env.nodes.length,
      'the pods have shims with sockets in their node’s /run/containerd/s',
    );
    const ourNames = new Set(ourShimSockets.map((f) => basename(f)));
    assert.deepEqual(
      shimSockets().filter((f) => ourNames.has(basename(f))),
      [],
      'no shim socket of this cluster in the host’s /run/containerd/s',
    );

    // The crash: every process of the cluster SIGKILLed at once, pid files lost.
    for (const line of clusterProcesses().filter((p) => p.includes(`${dir}/`))) {
      try {
        process.kill(Number(line.split(' ')[0]), 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(join(dir, 'pids'), { recursive: true, force: true });

    const downBegan = Date.now();
    await script('down.sh');
    t.diagnostic(`cluster-up ${upMs} ms; cluster-down after the crash ${Date.now() - downBegan} ms`);
    assert.deepEqual(await leftovers(), []);
    assert.deepEqual(
      ourShimSockets.filter((f) => existsSync(f)),
      [],
      'shim sockets removed',
    );
    const netnsAfter = (await run('ip', ['netns', 'list'])).stdout;
    assert.deepEqual(
      podNetns.filter((ns) => netnsAfter.includes(ns)),
      [],
      'pod network namespaces removed',
    );
    assert.equal(await hostIptables(), iptablesBefore, 'host iptables unchanged');
    // Host sysctls come back when the last real cluster goes (another, such as the stories' cluster, keeps them set).
    const others = (await run('ip', ['netns', 'list'])).stdout.split('\n').some((l) => /^tote-[0-9a-f]{4}-/.test(l));
    if (!others) {
      assert.deepEqual(await sysctls(), originals);
      assert.equal(existsSync('/run/tote-real-nodes'), false);
    } else {
      assert.ok(existsSync('/run/tote-real-nodes/sysctls'), 'the machine state stays for the other real cluster');
    }
  });
});
