// `tote migrate policy -- <tote 0.x controller flags>`: the SalvagePolicy that does what those flags did, and a note for
// every 0.x flag that is not a policy field (a controller flag now, a Secret to create, or nothing). Pure. The 0.x flags
// are those its work orders name (docs/migrating.md lists them with their new home).
import type { SalvagePolicy } from '../../api/index.ts';
import { parseDuration } from '../../api/index.ts';

export interface PolicyMigration {
  policy: SalvagePolicy;
  /** One line per thing the person must know or do, in flag order. */
  notes: string[];
}

export interface PolicyMigrationOptions {
  name: string;
  /** key=value: the label that selects the namespaces. */
  namespaceLabel: string;
  toteNamespace: string;
}

const notificationEvents = [
  'Detected',
  'Salvaged',
  'Failed',
  'NotActionable',
  'Skipped',
  'Corrupt',
  'Pushed',
  'PushFailed',
  'LastCopy',
] as const;

type Notifications = NonNullable<SalvagePolicy['spec']['notifications']>;

/** 0.x flag → what it becomes; each handler edits the policy under way and returns notes. */
type FlagHandler = (value: string, policy: SalvagePolicy, o: PolicyMigrationOptions) => string[];

const handlers: Record<string, FlagHandler> = {
  'max-image-size': (value, policy) => {
    const size = byteQuantity(value);
    if (!size) return [`--max-image-size=${value}: not a size tote reads; set spec.limits.maxImageSize by hand`];
    policy.spec.limits = { ...policy.spec.limits, maxImageSize: size };
    return size === value ? [] : [`--max-image-size=${value} is spec.limits.maxImageSize: ${size}`];
  },
  'backup-registry': (value, policy, o) => {
    const insecure = value.startsWith('http://');
    const target = value.replace(/^https?:\/\//, '').replace(/\/+$/, '');
    policy.spec.backup = { target, ...(insecure ? { insecure: true } : {}) };
    return [
      `--backup-registry is spec.backup.target; tote 0.x took its credentials from a Secret or the ServiceAccount: put them in a Secret in ${o.toteNamespace} (kubectl -n ${o.toteNamespace} create secret docker-registry backup-registry-credentials ...) and set spec.backup.credentialsSecretRef`,
    ];
  },
  'webhook-url': (_value, policy, o) => {
    policy.spec.notifications = {
      ...policy.spec.notifications,
      webhook: { urlSecretRef: { namespace: o.toteNamespace, name: 'tote-webhook', key: 'url' } },
    };
    // The URL may carry a token: it goes into a Secret, never into the policy or this output.
    return [
      `--webhook-url moves into a Secret the policy names: kubectl -n ${o.toteNamespace} create secret generic tote-webhook --from-literal=url=<the URL>`,
    ];
  },
  'webhook-events': (value, policy) => {
    const known: string[] = [];
    const unknown: string[] = [];
    for (const word of value
      .split(',')
      .map((w) => w.trim())
      .filter(Boolean)) {
      const match = notificationEvents.find((e) => e.toLowerCase() === word.toLowerCase());
      if (match) known.push(match);
      else unknown.push(word);
    }
    policy.spec.notifications = { ...policy.spec.notifications, events: known } as Notifications;
    return unknown.length ? [`--webhook-events: ${unknown.join(', ')} are not events tote sends; left out`] : [];
  },
  'salvagerecord-ttl': (value, policy) => {
    try {
      if (parseDuration(value) <= 0) throw new Error('not positive');
    } catch {
      return [`--salvagerecord-ttl=${value}: not a duration tote reads; set spec.recordTTL by hand`];
    }
    policy.spec.recordTTL = value;
    return [];
  },
  'json-log': () => ['--json-log is the controller flag --log-format=json (what config/ and the chart run)'],
  'tls-cert': () => ['--tls-cert is the controller flag --tls-cert-file; hack/certs/make-certs.sh makes the files'],
  'tls-key': () => ['--tls-key is the controller flag --tls-key-file'],
  'tls-ca': () => ['--tls-ca is the controller flag --tls-ca-file'],
  'leader-elect': () => ['--leader-elect is the controller flag of the same name (on in config/ and the chart)'],
  'metrics-bind-address': (v) => [`--metrics-bind-address=${v} is the controller flag of the same name`],
  'health-probe-bind-address': (v) => [`--health-probe-bind-address=${v} is the controller flag of the same name`],
};

/** Flags that take no value in tote 0.x. */
const booleanFlags = new Set(['json-log', 'leader-elect']);

export function policyFromV0Flags(args: readonly string[], o: PolicyMigrationOptions): PolicyMigration {
  const [labelKey = '', labelValue = ''] = o.namespaceLabel.split('=');
  const policy: SalvagePolicy = {
    apiVersion: 'tote.dev/v1alpha1',
    kind: 'SalvagePolicy',
    metadata: { name: o.name },
    spec: { namespaceSelector: { matchLabels: { [labelKey]: labelValue } } },
  };
  const notes = [
    `tote 0.x acted in namespaces annotated tote.dev/allow=true on pods annotated tote.dev/auto-salvage=true; those keep working with tote's defaults. This policy applies to namespaces labelled ${o.namespaceLabel}: kubectl label namespace <ns> ${o.namespaceLabel}`,
  ];
  for (const { flag, value } of parseFlags(args)) {
    const handler = handlers[flag];
    notes.push(...(handler ? handler(value, policy, o) : [`--${flag}: not a tote 0.x flag this knows; left out`]));
  }
  return { policy, notes };
}

function parseFlags(args: readonly string[]): { flag: string; value: string }[] {
  const out: { flag: string; value: string }[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = (args[i] ?? '').replace(/^--?/, '');
    const eq = arg.indexOf('=');
    if (eq >= 0) out.push({ flag: arg.slice(0, eq), value: arg.slice(eq + 1) });
    else if (booleanFlags.has(arg) || i + 1 >= args.length || (args[i + 1] ?? '').startsWith('-'))
      out.push({ flag: arg, value: 'true' });
    else out.push({ flag: arg, value: args[++i] ?? '' });
  }
  return out;
}

/** A byte size as a Kubernetes quantity: "2GB" → "2G", "2GiB" → "2Gi", "1073741824" stays; undefined when not a size. */
export function byteQuantity(value: string): string | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([KkMGTPE])(i)?B?|B)?\s*$/.exec(value);
  if (!m) return undefined;
  const [, number, unit, binary] = m;
  if (!unit) return number;
  // k is the decimal kilo in a quantity; binary units are upper case with i (Ki, Mi, ...).
  return binary ? `${number}${unit.toUpperCase()}i` : `${number}${unit === 'K' ? 'k' : unit}`;
}
