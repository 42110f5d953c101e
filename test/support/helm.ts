// Helm, built from its Go module by hack/helm/build.sh (cached; a warm cache answers at once), run against the local
// cluster. A machine without Go cannot build it: the test fails saying so rather than skipping.
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { ClusterEnv } from './cluster.ts';
import { repoRoot } from './cluster.ts';

export const chartDir = join(repoRoot, 'config/helm/tote');

let binary: string | undefined;

/** The path of the helm binary, building it on first use. */
export function helmBinary(): string {
  binary ??= execFileSync(join(repoRoot, 'hack/helm/build.sh'), { encoding: 'utf8' }).trim();
  return binary;
}

export interface HelmResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs helm with the cluster's kubeconfig (when given). Never throws on a non-zero exit: check `code`. */
export function helm(args: string[], env?: ClusterEnv): Promise<HelmResult> {
  const environment = {
    ...process.env,
    // Helm keeps its repository cache and release-independent config here; a test must not read a user's.
    HELM_CACHE_HOME: join(repoRoot, '.cache/helm/cache'),
    HELM_CONFIG_HOME: join(repoRoot, '.cache/helm/config'),
    HELM_DATA_HOME: join(repoRoot, '.cache/helm/data'),
    ...(env ? { KUBECONFIG: env.kubeconfig } : {}),
  };
  return new Promise((resolve) => {
    execFile(
      helmBinary(),
      args,
      { env: environment, maxBuffer: 32 * 1024 * 1024, timeout: 300_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ stdout, stderr, code });
      },
    );
  });
}
