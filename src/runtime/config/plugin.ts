// The options of the commands a person runs from a laptop, as `tote <command>` or `kubectl tote <command>`: status,
// why, salvage. `--namespace` / `-n` is the pod's namespace, as in kubectl; tote's own namespace is --tote-namespace.
import { apiTimeoutOptions, kubeOptions } from './common.ts';
import { ConfigError, option, parseConfig, splitPositionals } from './options.ts';
import type { ConfigOf } from './options.ts';

export const pluginOptions = {
  ...kubeOptions,
  namespace: option.string({
    flag: 'namespace',
    help: "The pod's namespace (-n). Unset: the kubeconfig context's namespace, else default.",
  }),
  toteNamespace: option.string({
    flag: 'tote-namespace',
    env: 'TOTE_NAMESPACE',
    default: 'tote-system',
    help: "tote's namespace: the controller's and the agents' Leases live here.",
  }),
  leaderElectionId: option.string({
    flag: 'leader-election-id',
    env: 'TOTE_LEADER_ELECTION_ID',
    default: 'tote-controller-leader',
    help: "Name of the controller's leader-election Lease.",
  }),
  container: option.string({
    flag: 'container',
    help: 'salvage: the container whose image to salvage (-c). Unset: the one stuck, when only one is.',
  }),
  ...apiTimeoutOptions,
  output: option.choice(['table', 'json'] as const)({
    flag: 'output',
    env: 'TOTE_OUTPUT',
    default: 'table',
    help: 'table for people, json for scripts (-o).',
  }),
};

/** kubectl's short flags, spelled out before parsing. */
export const pluginAliases: Readonly<Record<string, string>> = {
  '-n': '--namespace',
  '-c': '--container',
  '-o': '--output',
};

export type PluginConfig = ConfigOf<typeof pluginOptions>;

export interface PluginCommand {
  /** e.g. "why POD" */
  usage: string;
  description: string;
  /** How many words besides flags the command takes. */
  positionals: number;
}

/** Parses a plugin command's arguments: its words (`POD`) and its flags. */
export function parsePluginConfig(
  command: PluginCommand,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): { config: PluginConfig; args: string[] } {
  const { positionals, flags } = splitPositionals(pluginOptions, argv, pluginAliases);
  const config = parseConfig(pluginOptions, flags, env, { usage: command.usage, description: command.description });
  if (positionals.length !== command.positionals) {
    throw new ConfigError([
      `${command.usage}: expected ${command.positionals || 'no'} argument(s), got ${positionals.length ? positionals.join(' ') : 'none'}`,
    ]);
  }
  return { config, args: positionals };
}
