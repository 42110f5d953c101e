// Counting the controller's API requests as the API server sees them: a FlowSchema matching only the controller's
// ServiceAccount and only requests in one namespace, read from apiserver_flowcontrol_dispatched_requests_total. What a
// test counts this way is exactly what the controller sent about that namespace's objects (records, pods, Events),
// whatever else it does meanwhile for other tests. bench/scale counts the whole controller the same way.
import { kubectl } from './cluster.ts';
import type { ClusterEnv } from './cluster.ts';
import { toteNamespace } from './tote.ts';
import { watchUntil } from './wait.ts';

interface FlowSchema {
  metadata?: { name?: string };
  status?: { conditions?: { type?: string; status?: string }[] };
}

export interface RequestCounter {
  /** Requests the API server dispatched so far for the controller in the namespace. */
  count(): Promise<number>;
}

/**
 * Starts counting the controller's requests in `namespace`; resolves once the API server applies the FlowSchema (its
 * Dangling condition is set), so nothing sent after it is missed. The FlowSchema is deleted after the test.
 */
export async function countControllerRequests(
  env: ClusterEnv,
  namespace: string,
  t: { after: (fn: () => Promise<void>) => void },
): Promise<RequestCounter> {
  const name = `count-${namespace}`.slice(0, 63);
  const created = await kubectl(env, ['create', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'flowcontrol.apiserver.k8s.io/v1',
      kind: 'FlowSchema',
      metadata: { name },
      spec: {
        // Ahead of the default schemas that match service accounts (kube-system's at 900, all others' at 9000).
        matchingPrecedence: 40,
        priorityLevelConfiguration: { name: 'workload-high' },
        distinguisherMethod: { type: 'ByUser' },
        rules: [
          {
            subjects: [
              { kind: 'ServiceAccount', serviceAccount: { name: 'tote-controller', namespace: toteNamespace } },
            ],
            resourceRules: [{ verbs: ['*'], apiGroups: ['*'], resources: ['*'], namespaces: [namespace] }],
          },
        ],
      },
    }),
  });
  if (created.code !== 0) throw new Error(created.stderr);
  t.after(async () => {
    await kubectl(env, ['delete', 'flowschema', name, '--ignore-not-found']);
  });
  await watchUntil<FlowSchema & { metadata: object }, true>(
    env,
    '/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas',
    { fieldSelector: `metadata.name=${name}` },
    (objects) => (objects.get(name)?.status?.conditions?.some((c) => c.type === 'Dangling') ? true : undefined),
    { timeoutMs: 30_000, what: `FlowSchema ${name} applied by the API server` },
  );
  return {
    async count() {
      const metrics = await kubectl(env, ['get', '--raw', '/metrics']);
      if (metrics.code !== 0) throw new Error(metrics.stderr);
      let sum = 0;
      for (const line of metrics.stdout.split('\n')) {
        if (
          line.startsWith('apiserver_flowcontrol_dispatched_requests_total{') &&
          line.includes(`flow_schema="${name}"`)
        )
          sum += Number(line.slice(line.lastIndexOf(' ') + 1));
      }
      return sum;
    },
  };
}
