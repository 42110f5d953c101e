// tote's image under real kubelets, the first part of running tote as pods (issue 20): hack/image/load-nodes.sh puts
// the image `make image-offline` assembles into every real node's containerd under the name config/ runs
// (ghcr.io/tote-dev/tote:v<version>); a pod per node and per component, with the pod and container security contexts
// exactly as config/default ships them (read from its rendering), starts from it with imagePullPolicy IfNotPresent
// and no registry, on containerd 1.6 and 2.x, and its command answers.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { before, describe, it } from 'node:test';
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { kubectl, repoRoot, testNamespace } from '../support/cluster.ts';
import type { ClusterEnv } from '../support/cluster.ts';
import { podLogs, useRealCluster } from '../support/real-cluster.ts';
import { apply } from '../support/salvage.ts';
import { waitForPod } from '../support/wait.ts';

const run = promisify(execFile);
let env: ClusterEnv;
let image: string;
let shipped: Map<string, V1PodSpec>;

/** The pod specs of config/default's workloads, by kind. */
async function shippedPodSpecs(): Promise<Map<string, V1PodSpec>> {
  const rendered = await kubectl(env, ['kustomize', join(repoRoot, 'config/default')]);
  assert.equal(rendered.code, 0, rendered.stderr);
  const specs = new Map<string, V1PodSpec>();
  for (const doc of parseAllDocuments(rendered.stdout)) {
    const o = doc.toJS() as { kind: string; spec?: { template?: { spec: V1PodSpec } } };
    if ((o.kind === 'Deployment' || o.kind === 'DaemonSet') && o.spec?.template)
      specs.set(o.kind, o.spec.template.spec);
  }
  return specs;
}

describe('the tote image on real kubelets', () => {
  before(async () => {
    env = await useRealCluster();
    const loaded = await run(join(repoRoot, 'hack/image/load-nodes.sh'), [], {
      env: { ...process.env, TOTE_CLUSTER_DIR: env.dir },
      timeout: 600_000,
      maxBuffer: 16 << 20,
    });
    image = loaded.stdout.trim();
    shipped = await shippedPodSpecs();
  });

  it('is loaded under the name config/default runs', () => {
    for (const spec of shipped.values()) assert.equal(spec.containers[0]?.image, image);
  });

  for (const [kind, args, expected] of [
    ['Deployment', ['--help'], /^usage: tote <command>/m],
    ['DaemonSet', ['agent', '--help'], /--content-dir/],
  ] as const) {
    it(`runs with the ${kind}'s security contexts as shipped, on every node`, async (t) => {
      const ns = await testNamespace(env, t);
      const spec = shipped.get(kind)!;
      const container: V1Container = { ...spec.containers[0]!, args: [...args] };
      for (const node of env.nodes) {
        const name = `${kind.toLowerCase()}-${node}`;
        await apply(env, {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name, namespace: ns.name },
          spec: {
            nodeName: node,
            restartPolicy: 'Never',
            securityContext: spec.securityContext,
            // The command alone: no probes, no mounts of Secrets or host paths (what it needs to run comes later).
            containers: [
              {
                name: container.name,
                image: container.image,
                imagePullPolicy: 'IfNotPresent',
                args: container.args,
                securityContext: container.securityContext,
              },
            ],
          },
        });
        const pod = await waitForPod(
          env,
          ns.name,
          name,
          (p) => ['Succeeded', 'Failed'].includes(p.status?.phase ?? ''),
          {
            timeoutMs: 120_000,
          },
        );
        assert.equal(pod.status?.phase, 'Succeeded', `${name}: ${JSON.stringify(pod.status?.containerStatuses)}`);
        assert.match(await podLogs(env, ns.name, name), expected);
      }
    });
  }
});
