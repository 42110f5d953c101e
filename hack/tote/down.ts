// `make tote-down`: stops every tote process started on the local cluster, and on real kubelets removes the pods of
// `TOTE_INSTALL=manifests make tote-up` (the controller Deployment and the agent DaemonSet; CRDs and records stay),
// when the API server answers (a stopped cluster has no pods to remove).
import { existsSync } from 'node:fs';
import { clusterDir, kubectl, readClusterEnv } from '../../test/support/cluster.ts';
import { stopTote } from '../../test/support/tote.ts';
import { uninstallToteWorkloads } from '../../test/support/tote-manifests.ts';

const envFile = `${clusterDir()}/env`;
if (existsSync(envFile)) {
  const env = readClusterEnv(envFile);
  await stopTote(env);
  if (env.kubelet === 'real' && (await kubectl(env, ['get', '--raw=/readyz', '--request-timeout=5s'])).code === 0)
    await uninstallToteWorkloads(env);
}
console.log('tote is down');
