// `make tote-down`: stops every tote process started on the local cluster.
import { existsSync } from 'node:fs';
import { clusterDir, readClusterEnv } from '../../test/support/cluster.ts';
import { stopTote } from '../../test/support/tote.ts';

const envFile = `${clusterDir()}/env`;
if (existsSync(envFile)) await stopTote(readClusterEnv(envFile));
console.log('tote is down');
