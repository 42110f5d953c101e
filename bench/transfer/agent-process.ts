// One agent in its own process, so the benchmark can measure its memory alone. Configuration comes as one JSON
// argument; the process prints `LISTENING <host:port>` once serving and runs until killed.
import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { RenewableTls } from '../../src/agentapi/index.ts';
import { startAgentServer } from '../../src/agent/index.ts';
import { connectContainerd } from '../../src/containerd/index.ts';

interface Config {
  nodeName: string;
  socket: string;
  ca: string;
  cert: string;
  key: string;
  publicKey: string;
  contentDir?: string;
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config;
const agent = await startAgentServer({
  nodeName: config.nodeName,
  containerd: connectContainerd({ socket: config.socket }),
  tls: new RenewableTls({
    ca: readFileSync(config.ca),
    cert: readFileSync(config.cert),
    key: readFileSync(config.key),
  }),
  tokenPublicKey: readFileSync(config.publicKey, 'utf8'),
  listen: '127.0.0.1:0',
  registry: new Registry(),
  ...(config.contentDir ? { contentDir: config.contentDir } : {}),
});
process.stdout.write(`LISTENING ${agent.address}\n`);
process.on('SIGTERM', () => void agent.stop().then(() => process.exit(0)));
