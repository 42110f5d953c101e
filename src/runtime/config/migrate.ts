// The options of `tote migrate records` and `tote migrate policy` (docs/migrating.md).
import { apiTimeoutOptions, kubeOptions } from './common.ts';
import { option } from './options.ts';
import type { ConfigOf } from './options.ts';

export const migrateOptions = {
  ...kubeOptions,
  namespace: option.string({
    flag: 'namespace',
    help: 'records: migrate only this namespace (-n). Unset: every namespace.',
  }),
  dryRun: option.boolean({
    flag: 'dry-run',
    default: false,
    help: 'records: say what would change, write nothing.',
  }),
  policyName: option.string({
    flag: 'policy-name',
    default: 'migrated-from-0x',
    help: 'policy: the name of the SalvagePolicy written.',
  }),
  namespaceLabel: option.string({
    flag: 'namespace-label',
    default: 'tote.dev/salvage=enabled',
    help: 'policy: the label (key=value) that puts a namespace in the policy’s scope.',
  }),
  toteNamespace: option.string({
    flag: 'tote-namespace',
    env: 'TOTE_NAMESPACE',
    default: 'tote-system',
    help: "policy: tote's namespace, where the Secrets the policy names must live.",
  }),
  ...apiTimeoutOptions,
};

export type MigrateConfig = ConfigOf<typeof migrateOptions>;
