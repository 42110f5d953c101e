// Configuration: the generic option-table parser and the tables of `tote controller` and `tote agent`.
export * from './options.ts';
export * from './common.ts';
export * from './controller.ts';
export * from './agent.ts';
export * from './doctor.ts';
export * from './plugin.ts';
export * from './migrate.ts';
