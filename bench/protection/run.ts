// Protection benchmark (`make bench-protection`, SalvagePolicy spec.protection). Two clocks:
//
// 1. cordon → last endangered image copied: images that only node-a holds (gone from their registry) run in pods on
//    node-a under a policy with minCopies 1, so nothing needs copying; then node-a is cordoned, and the clock runs
//    until every image has a Completed Evacuation record (a complete copy on a staying node).
// 2. registry stopped serving → minimum copies reached: images pulled by node-a run in pods there while their registry
//    still serves them, under a policy with minCopies 3; then the registry loses them, and the clock runs until every
//    image has two Completed protective records (three complete copies). This includes the policy's
//    registryCheckInterval (its lowest, 30 s): the answer "the registry serves it" is trusted that long, by design.
//
// Settings: TOTE_BENCH_PROTECTION_IMAGES (per scenario, default 5), TOTE_BENCH_PROTECTION_MB (per image, default 20).
import type { SalvageRecord } from '../../src/api/index.ts';
import { ensureCluster, kubectl, testNamespace } from '../../test/support/cluster.ts';
import type { ClusterEnv } from '../../test/support/cluster.ts';
import { deleteImageFromRegistry, registries } from '../../test/support/images.ts';
import type { TestImage } from '../../test/support/images.ts';
import { ensureTote } from '../../test/support/tote.ts';
import {
  deployment,
  imageOnNodes,
  scopedPolicy,
  waitForRecords,
  waitForRunningPods,
} from '../../test/support/salvage.ts';
import { logger, report, seconds } from '../lib/report.ts';

const log = logger('bench-protection');
const imageCount = Number(process.env.TOTE_BENCH_PROTECTION_IMAGES ?? 5);
const sizeMb = Number(process.env.TOTE_BENCH_PROTECTION_MB ?? 20);
const holder = 'node-a';
const runId = `p${Date.now().toString(36)}`;
const registryCheckInterval = '30s';

/**
 * `count` images of `sizeMb`, each pulled by node-a and run by a one-pod Deployment there; `lost`: removed from the
 * registry before the pods start, so the policy has known them unserved all along.
 */
async function imagesInUse(env: ClusterEnv, namespace: string, scenario: string, lost: boolean): Promise<TestImage[]> {
  const layers = 2;
  const images: TestImage[] = [];
  for (let i = 0; i < imageCount; i++) {
    const tag = `${runId}-${scenario}-${i}`;
    const image = await imageOnNodes(
      env,
      {
        repository: `bench/protect-${scenario}`,
        tag,
        seed: tag,
        layers,
        layerSize: Math.round((sizeMb * 1e6) / layers),
      },
      [holder],
    );
    if (lost) await deleteImageFromRegistry(registries(env).source, image, env.sourceRegistryConfig);
    await deployment(env, namespace, `app-${i}`, image.reference(env.sourceRegistry), [holder]);
    images.push(image);
  }
  for (let i = 0; i < imageCount; i++) await waitForRunningPods(env, namespace, `app-${i}`, 1);
  return images;
}

const completed = (reason: string) => (r: SalvageRecord) =>
  r.spec.purpose === 'Protect' && r.spec.reason === reason && r.status?.phase === 'Completed';

/** Seconds from `start` to the first and the last record's Completed history entry. */
function spread(records: SalvageRecord[], start: number): { first_s: number; last_s: number } {
  const done = records
    .map((r) => Date.parse(r.status?.history?.findLast((h) => h.phase === 'Completed')?.time ?? ''))
    .filter((t) => !Number.isNaN(t))
    .sort((a, b) => a - b);
  return { first_s: seconds((done[0] ?? start) - start), last_s: seconds((done.at(-1) ?? start) - start) };
}

async function cordonScenario(env: ClusterEnv): Promise<Record<string, unknown>> {
  const ns = await testNamespace(env, { name: 'bench-evacuate' });
  await scopedPolicy(env, ns, { protection: { minCopies: 1, registryCheckInterval } });
  const images = await imagesInUse(env, ns.name, 'evacuate', true);
  log(`${images.length} images only on ${holder}, gone from the registry; cordoning ${holder}`);
  const started = Date.now();
  const cordoned = await kubectl(env, ['cordon', holder]);
  if (cordoned.code !== 0) throw new Error(cordoned.stderr);
  try {
    const records = await waitForRecords(env, ns.name, images.length, completed('Evacuation'), { timeoutMs: 600_000 });
    const seen = Date.now();
    return {
      images: images.length,
      records: records.length,
      watch_s: seconds(seen - started),
      ...spread(records, started),
    };
  } finally {
    await kubectl(env, ['uncordon', holder]);
    await ns.delete();
  }
}

async function registryScenario(env: ClusterEnv): Promise<Record<string, unknown>> {
  const ns = await testNamespace(env, { name: 'bench-replicate' });
  await scopedPolicy(env, ns, { protection: { minCopies: 3, registryCheckInterval } });
  const images = await imagesInUse(env, ns.name, 'replicate', false);
  log(`${images.length} images on ${holder}, still served; removing them from the registry`);
  const started = Date.now();
  for (const image of images) await deleteImageFromRegistry(registries(env).source, image, env.sourceRegistryConfig);
  const removed = Date.now();
  try {
    const records = await waitForRecords(env, ns.name, 2 * images.length, completed('Endangered'), {
      timeoutMs: 900_000,
    });
    const seen = Date.now();
    const created = records
      .map((r) => Date.parse(r.metadata?.creationTimestamp as unknown as string))
      .sort((a, b) => a - b);
    return {
      images: images.length,
      records: records.length,
      registry_removal_s: seconds(removed - started),
      first_record_created_s: seconds((created[0] ?? started) - started),
      watch_s: seconds(seen - started),
      ...spread(records, started),
    };
  } finally {
    await ns.delete();
  }
}

const env = await ensureCluster();
if (env.nodes.length < 3)
  throw new Error(`bench-protection needs 3 nodes or more; the cluster has ${env.nodes.length}`);
await ensureTote(env);
const cordon = await cordonScenario(env);
log(`cordon → last endangered image copied: ${JSON.stringify(cordon)}`);
const registry = await registryScenario(env);
log(`registry stopped → minimum copies: ${JSON.stringify(registry)}`);
report('protection', {
  image_bytes: sizeMb * 1e6,
  nodes_in_cluster: env.nodes.length,
  cordon_to_last_copy: cordon,
  registry_stopped_to_min_copies: { ...registry, min_copies: 3, registry_check_interval: registryCheckInterval },
  note: 'first_s/last_s from the records’ Completed history entries (1 s resolution); watch_s when the watch saw the last one; the registry scenario includes up to one registryCheckInterval of trusting the earlier "serves" answer',
});
