// `tote doctor`: answers "can tote salvage in this cluster right now, and if not, why?" Each check is a small
// function returning one or more rows (ok / warn / fail with a detail a person can act on); a failed check never stops
// the others. Exit code 1 when any row fails, 0 otherwise (warnings included).
import { readFileSync } from 'node:fs';
import type { V1CustomResourceDefinition, V1Lease, V1Namespace, V1Node, V1Pod } from '@kubernetes/client-node';
import { errorMessage, findCondition, SalvagePolicyResource } from '../api/index.ts';
import type { SalvagePolicy } from '../api/index.ts';
import { connectAgent } from '../agentapi/index.ts';
import type { TlsMaterial } from '../agentapi/index.ts';
import { decideScope, scopeSubject } from '../controller/policy/policy-match.ts';
import { repositoryOf } from '../controller/pod/node-images.ts';
import { parseDoctorConfig } from '../runtime/config/index.ts';
import type { DoctorConfig } from '../runtime/config/index.ts';
import { KubeClient, loadKubeConfig, resources } from '../runtime/kube.ts';
import { agentsOf, leaderOf } from './plugin/cluster-facts.ts';
import { parseOrExplain } from './run.ts';

export type Verdict = 'ok' | 'warn' | 'fail';

export interface CheckRow {
  check: string;
  verdict: Verdict;
  detail: string;
}

const expectedCrds = ['salvagepolicies.tote.dev', 'salvagerecords.tote.dev'];

interface DoctorContext {
  config: DoctorConfig;
  kube: KubeClient;
  now: number;
}

export async function runDoctor(argv: string[]): Promise<number> {
  const parsed = parseOrExplain(parseDoctorConfig, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const rows = await diagnose(parsed.config);
  process.stdout.write(parsed.config.output === 'json' ? `${JSON.stringify(rows, null, 2)}\n` : renderTable(rows));
  return rows.some((r) => r.verdict === 'fail') ? 1 : 0;
}

/** Runs every check; API access first, since the others need it. */
export async function diagnose(config: DoctorConfig): Promise<CheckRow[]> {
  let kube: KubeClient;
  try {
    kube = new KubeClient(loadKubeConfig(config.kubeconfig), {
      requestTimeoutMs: config.timeoutMs,
      fieldManager: 'tote-doctor',
    });
    await kube.list(resources.namespaces, undefined, { limit: 1 });
  } catch (err) {
    return [{ check: 'API server', verdict: 'fail', detail: `cannot list namespaces: ${errorMessage(err)}` }];
  }
  const c: DoctorContext = { config, kube, now: Date.now() };
  const rows: CheckRow[] = [{ check: 'API server', verdict: 'ok', detail: 'reachable with these credentials' }];
  for (const check of [checkCrds, checkController, checkAgents, checkPolicies, checkWorkloads]) {
    try {
      rows.push(...(await check(c)));
    } catch (err) {
      rows.push({ check: check.name.replace(/^check/, ''), verdict: 'fail', detail: errorMessage(err) });
    }
  }
  return rows;
}

async function checkCrds(c: DoctorContext): Promise<CheckRow[]> {
  return Promise.all(
    expectedCrds.map(async (name): Promise<CheckRow> => {
      const crd = await c.kube.getOrUndefined<V1CustomResourceDefinition>(resources.customResourceDefinitions, name);
      if (!crd) return { check: `CRD ${name}`, verdict: 'fail', detail: 'not installed: kubectl apply -k config/crd' };
      const established = crd.status?.conditions?.find((x) => x.type === 'Established')?.status === 'True';
      const served = crd.spec.versions.filter((v) => v.served).map((v) => v.name);
      if (!established) return { check: `CRD ${name}`, verdict: 'fail', detail: 'installed but not Established' };
      if (!served.includes('v1alpha1')) {
        return {
          check: `CRD ${name}`,
          verdict: 'fail',
          detail: `serves ${served.join(', ')}, this tote needs v1alpha1`,
        };
      }
      return { check: `CRD ${name}`, verdict: 'ok', detail: `Established; serves ${served.join(', ')}` };
    }),
  );
}

async function checkController(c: DoctorContext): Promise<CheckRow[]> {
  const lease = await c.kube.getOrUndefined<V1Lease>(resources.leases, c.config.leaderElectionId, c.config.namespace);
  const leader = leaderOf(lease, c.now);
  if (!leader.holder) {
    return [
      {
        check: 'controller',
        verdict: 'fail',
        detail: `no leader: Lease ${c.config.namespace}/${c.config.leaderElectionId} has no holder (is the controller running, with --leader-elect?)`,
      },
    ];
  }
  if (!leader.alive) {
    return [
      {
        check: 'controller',
        verdict: 'fail',
        detail: `leader ${leader.holder} last renewed ${leader.renewedSecondsAgo}s ago (lease ${leader.leaseSeconds}s): it is down or cannot reach the API server`,
      },
    ];
  }
  return [
    { check: 'controller', verdict: 'ok', detail: `leader ${leader.holder}, renewed ${leader.renewedSecondsAgo}s ago` },
  ];
}

async function checkAgents(c: DoctorContext): Promise<CheckRow[]> {
  const nodes = (await c.kube.listAll<V1Node>(resources.nodes)).items;
  const leases = (await c.kube.listAll<V1Lease>(resources.leases, c.config.namespace)).items;
  const tls = readTls(c.config);
  return Promise.all(
    agentsOf(nodes, leases, c.now).map(async (agent): Promise<CheckRow> => {
      const check = `agent ${agent.node}`;
      if (!agent.alive || agent.address === undefined)
        return { check, verdict: 'fail', detail: agent.problem ?? 'not alive' };
      if (!tls) return { check, verdict: 'ok', detail: `announced at ${agent.address} (pass --tls-* to call it)` };
      const client = connectAgent({
        address: agent.address,
        tls,
        server: { kind: 'agent', node: agent.node },
        timeoutMs: c.config.timeoutMs,
      });
      try {
        const info = await client.getNodeInfo();
        const version = `containerd ${info.containerdVersion}`;
        const warnings = [
          ...(info.layersDiscarded
            ? ['some images lack layers (discard_unpacked_layers?); those cannot be a source']
            : []),
          ...(info.pinsHonoured
            ? []
            : [
                'ignores pins set outside CRI (honoured from 1.6.26, 1.7.10, 2.0); policy spec.protection relies on copies here',
              ]),
        ];
        if (warnings.length > 0) return { check, verdict: 'warn', detail: `${version}: ${warnings.join('; ')}` };
        return { check, verdict: 'ok', detail: `${version} at ${agent.address}` };
      } catch (err) {
        return {
          check,
          verdict: 'fail',
          detail: `announced at ${agent.address} but does not answer: ${errorMessage(err)}`,
        };
      } finally {
        client.close();
      }
    }),
  );
}

function readTls(config: DoctorConfig): TlsMaterial | undefined {
  if (!config.tlsCaFile || !config.tlsCertFile || !config.tlsKeyFile) return undefined;
  return {
    ca: readFileSync(config.tlsCaFile),
    cert: readFileSync(config.tlsCertFile),
    key: readFileSync(config.tlsKeyFile),
  };
}

async function checkPolicies(c: DoctorContext): Promise<CheckRow[]> {
  const policies = (await c.kube.listAll<SalvagePolicy & { metadata: object }>(SalvagePolicyResource)).items;
  if (policies.length === 0) {
    return [
      {
        check: 'policies',
        verdict: 'warn',
        detail: 'no SalvagePolicy: tote acts only on pods opted in by annotations',
      },
    ];
  }
  return policies.map((p): CheckRow => {
    const check = `policy ${p.metadata?.name}`;
    const ready = findCondition(p.status?.conditions, 'Ready');
    if (!ready) return { check, verdict: 'warn', detail: 'not yet reconciled by the controller' };
    if (ready.status !== 'True') return { check, verdict: 'fail', detail: `${ready.reason}: ${ready.message}` };
    if (p.status?.observedGeneration !== p.metadata?.generation) {
      return { check, verdict: 'warn', detail: 'Ready, but the controller has not seen the latest change yet' };
    }
    return { check, verdict: 'ok', detail: `Ready (${p.spec.mode ?? 'Salvage'})` };
  });
}

/**
 * Workloads in scope whose containers use imagePullPolicy: Always: the kubelet pulls again even with the image on the
 * node, so a salvage cannot help them while the registry is down.
 */
async function checkWorkloads(c: DoctorContext): Promise<CheckRow[]> {
  const [policies, namespaces, pods] = await Promise.all([
    c.kube.listAll<SalvagePolicy & { metadata: object }>(SalvagePolicyResource).then((l) => l.items),
    c.kube.listAll<V1Namespace>(resources.namespaces).then((l) => l.items),
    c.kube.listAll<V1Pod>(resources.pods).then((l) => l.items),
  ]);
  const nsByName = new Map(namespaces.map((n) => [n.metadata?.name ?? '', n]));
  const always = new Set<string>();
  for (const pod of pods) {
    const namespace = pod.metadata?.namespace ?? '';
    const ns = nsByName.get(namespace);
    for (const container of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
      if (container.imagePullPolicy !== 'Always') continue;
      const repository = repositoryOf(container.image ?? '');
      if (!repository) continue;
      const scope = decideScope(policies, scopeSubject(pod, ns, repository));
      if (scope.inScope) always.add(`${namespace}/${pod.metadata?.ownerReferences?.[0]?.name ?? pod.metadata?.name}`);
    }
  }
  if (always.size === 0)
    return [{ check: 'workloads', verdict: 'ok', detail: 'no workload in scope pulls with imagePullPolicy: Always' }];
  const list = [...always].sort();
  return [
    {
      check: 'workloads',
      verdict: 'warn',
      detail: `${list.length} in scope use imagePullPolicy: Always, which a salvage cannot help: ${list.slice(0, 5).join(', ')}${list.length > 5 ? ', …' : ''}`,
    },
  ];
}

export function renderTable(rows: readonly CheckRow[]): string {
  const mark: Record<Verdict, string> = { ok: 'OK', warn: 'WARN', fail: 'FAIL' };
  const width = Math.max(5, ...rows.map((r) => r.check.length));
  const lines = [`${'CHECK'.padEnd(width)}  STATUS  DETAIL`];
  for (const r of rows) lines.push(`${r.check.padEnd(width)}  ${mark[r.verdict].padEnd(6)}  ${r.detail}`);
  const failed = rows.filter((r) => r.verdict === 'fail').length;
  const warned = rows.filter((r) => r.verdict === 'warn').length;
  lines.push(
    '',
    failed > 0
      ? `${failed} problem(s) block salvage.`
      : warned > 0
        ? `No blocking problem; ${warned} warning(s).`
        : 'tote is ready to salvage.',
  );
  return `${lines.join('\n')}\n`;
}
