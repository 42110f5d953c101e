// `make tote-up`: tote's agents and controller as processes on the local cluster (test/support/tote.ts), with the
// shipped RBAC. Prints where the logs are.
import { ensureCluster } from '../../test/support/cluster.ts';
import { ensureTote } from '../../test/support/tote.ts';

const env = await ensureCluster();
const tote = await ensureTote(env);
console.log(`tote is up: controller pid ${tote.controller.pid} (${tote.controller.healthUrl}/readyz)`);
for (const [node, agent] of tote.agents) console.log(`  agent ${node}: pid ${agent.pid}`);
console.log(`logs: ${tote.paths.logs}`);
