// What the laptop commands (status, why, salvage) share: parsing their words and flags, an API client, and columns.
import { parsePluginConfig } from '../../runtime/config/index.ts';
import type { PluginCommand, PluginConfig } from '../../runtime/config/index.ts';
import { KubeClient, loadKubeConfig } from '../../runtime/kube.ts';
import { parseOrExplain } from '../run.ts';

/** The command's config and words, or the exit code when --help was asked for or the arguments are wrong. */
export function parsePlugin(
  command: PluginCommand,
  argv: readonly string[],
): { config: PluginConfig; args: string[] } | { exitCode: number } {
  const parsed = parseOrExplain((a, env) => parsePluginConfig(command, a, env), argv);
  return 'exitCode' in parsed ? parsed : parsed.config;
}

export function pluginKube(config: PluginConfig): KubeClient {
  return new KubeClient(loadKubeConfig(config.kubeconfig), {
    requestTimeoutMs: config.timeoutMs,
    fieldManager: 'kubectl-tote',
  });
}

/** The pod's namespace: --namespace, else the kubeconfig context's (which defaults to "default"). */
export function podNamespace(config: PluginConfig): string {
  return config.namespace ?? loadKubeConfig(config.kubeconfig).namespace;
}

/** Left-aligned columns under a header, two spaces apart, like kubectl get; a lone "(none)" line when empty. */
export function renderColumns(header: readonly string[], rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '  (none)\n';
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `  ${cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()}`;
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}
