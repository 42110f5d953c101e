// `make tote-up`: tote on the local cluster, with the shipped RBAC. TOTE_INSTALL chooses how:
//   processes (default)  agents and controller as host processes (test/support/tote.ts); prints where the logs are
//   manifests            as a user installs it: the image loaded into each real node, make-certs.sh, and
//                        `kubectl apply -k config/default` (test/support/tote-manifests.ts)
//   chart                the same with `helm upgrade --install tote config/helm/tote` instead of config/default
// The last two need real kubelets, so the cluster starts with TOTE_KUBELET=real unless told otherwise. Each replaces
// the others on the cluster.
import { ensureCluster } from '../../test/support/cluster.ts';
import { ensureTote, stopTote } from '../../test/support/tote.ts';
import {
  installToteChart,
  installToteManifests,
  toteInstallMode,
  uninstallToteWorkloads,
} from '../../test/support/tote-manifests.ts';

const mode = toteInstallMode();
if (mode === 'processes') {
  const env = await ensureCluster();
  if (env.kubelet === 'real') await uninstallToteWorkloads(env);
  const tote = await ensureTote(env);
  console.log(`tote is up: controller pid ${tote.controller.pid} (${tote.controller.healthUrl}/readyz)`);
  for (const [node, agent] of tote.agents) console.log(`  agent ${node}: pid ${agent.pid}`);
  console.log(`logs: ${tote.paths.logs}`);
} else {
  process.env.TOTE_KUBELET ??= 'real';
  const env = await ensureCluster();
  await stopTote(env);
  const tote = mode === 'chart' ? await installToteChart(env) : await installToteManifests(env);
  console.log(`tote is up from ${mode === 'chart' ? 'the chart' : 'config/default'} (${tote.image}):`);
  for (const pod of [...tote.controllers, ...tote.agents])
    console.log(`  ${pod.metadata?.name} on ${pod.spec?.nodeName} (${pod.status?.podIP})`);
  console.log(`certificates: ${tote.certs}; logs: ${env.kubectl} logs -n tote-system <pod>`);
}
