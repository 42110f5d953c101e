// The settings a record is driven by, with every default applied: from the SalvagePolicy that selects the pod, or
// tote's built-in defaults for pods opted in by annotation (api/reasons.ts, Annotations) and for hand-made records
// without a policy. The API
// server applies the CRD defaults on write; applying them again here keeps a policy written before a default was added
// (or read from a cache) from meaning something different.
import { parseDuration, parseQuantity } from '../../api/index.ts';
import type { PolicyMode, SalvagePolicy, SecretKeyReference, SecretReference } from '../../api/index.ts';

export interface EffectivePolicy {
  /** The policy's name, or undefined for built-in defaults. */
  name: string | undefined;
  uid: string | undefined;
  mode: PolicyMode;
  maxImageSizeBytes: number;
  maxConcurrentTransfers: number;
  bandwidthBytesPerSecond: number | undefined;
  backup:
    | {
        target: string;
        credentialsSecretRef: SecretReference | undefined;
        caSecretRef: SecretReference | undefined;
        insecure: boolean;
      }
    | undefined;
  tagResolution: { enabled: boolean; timeoutMs: number };
  restartPod: boolean;
  cleanCorrupt: boolean;
  recordTtlMs: number;
  /** spec.protection, defaults filled in; undefined when the policy does not protect images before they get stuck. */
  protection: ProtectionSettings | undefined;
  notifications:
    | {
        urlSecretRef: SecretKeyReference;
        signingSecretRef: SecretKeyReference | undefined;
        timeoutMs: number;
        events: string[];
      }
    | undefined;
}

export interface ProtectionSettings {
  minCopies: number;
  evacuateOnDrain: boolean;
  pin: boolean;
  registryCheckIntervalMs: number;
  registryCredentialsSecretRef: SecretReference | undefined;
}

export const defaultPolicy: EffectivePolicy = Object.freeze({
  name: undefined,
  uid: undefined,
  mode: 'Salvage',
  maxImageSizeBytes: 2 * 2 ** 30,
  maxConcurrentTransfers: 2,
  bandwidthBytesPerSecond: undefined,
  backup: undefined,
  tagResolution: { enabled: false, timeoutMs: 10_000 },
  restartPod: true,
  cleanCorrupt: true,
  recordTtlMs: 168 * 3_600_000,
  protection: undefined,
  notifications: undefined,
});

/** A policy field tote cannot read (the CRD should have refused it: an older CRD, or a grammar gap). */
export class PolicyFieldError extends Error {
  readonly field: string;
  constructor(field: string, cause: unknown) {
    super(`${field}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'PolicyFieldError';
    this.field = field;
  }
}

/** Reads one field, so that a value tote cannot use fails naming the field. */
function read<T>(field: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new PolicyFieldError(field, err);
  }
}

/** The policy as tote applies it, defaults filled in. @throws PolicyFieldError naming the first field it cannot use. */
export function effectivePolicy(policy: SalvagePolicy): EffectivePolicy {
  const spec = policy.spec;
  const backup = spec.mode === 'DetectOnly' ? undefined : spec.backup;
  const webhook = spec.notifications?.webhook;
  return {
    name: policy.metadata?.name,
    uid: policy.metadata?.uid,
    mode: spec.mode ?? defaultPolicy.mode,
    maxImageSizeBytes:
      spec.limits?.maxImageSize !== undefined
        ? read('spec.limits.maxImageSize', () => parseQuantity(spec.limits?.maxImageSize ?? 0))
        : defaultPolicy.maxImageSizeBytes,
    maxConcurrentTransfers: spec.limits?.maxConcurrentTransfers ?? defaultPolicy.maxConcurrentTransfers,
    bandwidthBytesPerSecond:
      spec.limits?.bandwidthPerTransfer !== undefined
        ? read('spec.limits.bandwidthPerTransfer', () => parseQuantity(spec.limits?.bandwidthPerTransfer ?? 0))
        : undefined,
    backup: backup
      ? {
          target: backup.target,
          credentialsSecretRef: backup.credentialsSecretRef,
          caSecretRef: backup.caSecretRef,
          insecure: backup.insecure ?? false,
        }
      : undefined,
    tagResolution: {
      enabled: spec.tagResolution?.enabled ?? false,
      timeoutMs: read('spec.tagResolution.timeout', () => parseDuration(spec.tagResolution?.timeout ?? '10s')),
    },
    restartPod: spec.actions?.restartPod ?? true,
    cleanCorrupt: spec.actions?.cleanCorrupt ?? true,
    recordTtlMs: read('spec.recordTTL', () => parseDuration(spec.recordTTL ?? '168h')),
    protection: spec.protection
      ? {
          minCopies: spec.protection.minCopies,
          evacuateOnDrain: spec.protection.evacuateOnDrain ?? true,
          pin: spec.protection.pin ?? true,
          registryCheckIntervalMs: read('spec.protection.registryCheckInterval', () =>
            parseDuration(spec.protection?.registryCheckInterval ?? '10m'),
          ),
          registryCredentialsSecretRef: spec.protection.registryCredentialsSecretRef,
        }
      : undefined,
    notifications: webhook
      ? {
          urlSecretRef: webhook.urlSecretRef,
          signingSecretRef: webhook.signingSecretRef,
          timeoutMs: read('spec.notifications.webhook.timeout', () => parseDuration(webhook.timeout ?? '5s')),
          events: spec.notifications?.events ?? ['Salvaged', 'Failed', 'NotActionable', 'LastCopy'],
        }
      : undefined,
  };
}
