// `tote migrate records` and `tote migrate policy -- <0.x flags>`: the way over from tote 0.x (docs/migrating.md).
import { stringify } from 'yaml';
import { errorMessage, SalvageRecordResource } from '../../api/index.ts';
import type { SalvageRecord } from '../../api/index.ts';
import { ConfigError, migrateOptions, parseConfig, splitPositionals } from '../../runtime/config/index.ts';
import type { MigrateConfig } from '../../runtime/config/index.ts';
import { KubeClient, loadKubeConfig } from '../../runtime/kube.ts';
import { parseOrExplain } from '../run.ts';
import { policyFromV0Flags } from './policy.ts';
import { migratedStatus, needsMigration } from './records.ts';

const usage = 'migrate records [-n NAMESPACE] [--dry-run] | migrate policy [flags] -- <tote 0.x controller flags>';
const description =
  'records: gives SalvageRecords written by tote 0.x the status this tote reads, in place, keeping every 0.x field (run it after applying the new CRDs). policy: prints the SalvagePolicy that does what the tote 0.x controller flags did, with a note for each flag that is no policy field.';

interface MigrateInput {
  config: MigrateConfig;
  what: string;
  v0Flags: string[];
}

function parseMigrate(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): MigrateInput {
  const end = argv.indexOf('--');
  const own = end >= 0 ? argv.slice(0, end) : argv;
  const { positionals, flags } = splitPositionals(migrateOptions, own, { '-n': '--namespace' });
  const config = parseConfig(migrateOptions, flags, env, { usage: `tote ${usage}`, description });
  const [what = ''] = positionals;
  if (positionals.length !== 1 || !['records', 'policy'].includes(what))
    throw new ConfigError([`usage: tote ${usage}`]);
  if (!/^[^=]+=[^=]*$/.test(config.namespaceLabel)) throw new ConfigError(['--namespace-label: expected key=value']);
  return { config, what, v0Flags: end >= 0 ? argv.slice(end + 1) : [] };
}

export async function runMigrate(argv: string[]): Promise<number> {
  const parsed = parseOrExplain(parseMigrate, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const { config, what, v0Flags } = parsed.config;
  return what === 'policy' ? printPolicy(config, v0Flags) : migrateRecords(config);
}

function printPolicy(config: MigrateConfig, v0Flags: string[]): number {
  const { policy, notes } = policyFromV0Flags(v0Flags, {
    name: config.policyName,
    namespaceLabel: config.namespaceLabel,
    toteNamespace: config.toteNamespace,
  });
  const header = ['# SalvagePolicy from tote 0.x controller flags (tote migrate policy). Before applying:']
    .concat(notes.map((n) => `# - ${n}`))
    .join('\n');
  process.stdout.write(`${header}\n${stringify(policy)}`);
  return 0;
}

async function migrateRecords(config: MigrateConfig): Promise<number> {
  const kube = new KubeClient(loadKubeConfig(config.kubeconfig), {
    requestTimeoutMs: config.timeoutMs,
    fieldManager: 'tote-migrate',
  });
  const records = (await kube.listAll<SalvageRecord & { metadata: object }>(SalvageRecordResource, config.namespace))
    .items;
  const now = new Date();
  let failed = 0;
  let migrated = 0;
  for (const record of records.filter(needsMigration)) {
    const where = `${record.metadata?.namespace}/${record.metadata?.name}`;
    const status = migratedStatus(record, now);
    try {
      // With the resourceVersion read: a record something else changed meanwhile is reported, not overwritten.
      if (!config.dryRun) await kube.updateStatus(SalvageRecordResource, { ...record, status });
      migrated++;
      process.stdout.write(
        `${config.dryRun ? 'would migrate' : 'migrated'} ${where}: ${status.phase}: ${status.message}\n`,
      );
    } catch (err) {
      failed++;
      process.stderr.write(`${where}: ${errorMessage(err)} (run tote migrate records again)\n`);
    }
  }
  process.stdout.write(
    `${migrated} record(s) ${config.dryRun ? 'to migrate' : 'migrated'}, ${records.length - migrated - failed} already in this tote's shape, ${failed} failed\n`,
  );
  return failed > 0 ? 1 : 0;
}
