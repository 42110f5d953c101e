// tote's API surface for the other layers: the generated CRD types and the helpers around them.
export type * from '../../generated/api/v1alpha1.ts';
export { SalvagePolicyResource, SalvageRecordResource } from '../../generated/api/v1alpha1.ts';
export * from './conditions.ts';
export * from './duration.ts';
export * from './errors.ts';
export * from './names.ts';
export * from './quantity.ts';
export * from './reasons.ts';
export * from './agent-lease.ts';
