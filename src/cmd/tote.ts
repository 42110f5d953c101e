#!/usr/bin/env node
// tote's single entry point: `tote controller` and `tote agent` run in the cluster; `tote doctor`, `status`, `why` and
// `salvage` are for people. The same program is kubectl's plugin when installed under the name `kubectl-tote`
// (`kubectl tote status`): kubectl runs it with the words after `tote`.
import { basename } from 'node:path';
import { runAgent } from './agent.ts';
import { runController } from './controller.ts';
import { runDoctor } from './doctor.ts';
import { runMigrate } from './migrate/index.ts';
import { runSalvage } from './plugin/salvage.ts';
import { runStatus } from './plugin/status.ts';
import { runWhy } from './plugin/why.ts';

const commands: Record<string, { run: (argv: string[]) => Promise<number>; help: string }> = {
  controller: { run: runController, help: 'watch for pods stuck on lost images and salvage them (a Deployment)' },
  agent: { run: runAgent, help: 'serve one node’s images to the controller and to peers (a DaemonSet)' },
  doctor: { run: runDoctor, help: 'check that tote is installed and able to salvage; non-zero exit on problems' },
  status: { run: runStatus, help: 'records in flight, endangered images and their copies, the controller and agents' },
  why: { run: runWhy, help: 'POD: in scope or not, which policy, which record, what happens next' },
  salvage: { run: runSalvage, help: 'POD: ask tote to put the pod’s image on its node (creates the SalvageRecord)' },
  migrate: { run: runMigrate, help: 'records | policy: the way over from tote 0.x (docs/migrating.md)' },
};

/** `kubectl tote` when kubectl runs this as its plugin, else `tote`. */
const program = basename(process.argv[1] ?? '').startsWith('kubectl-tote') ? 'kubectl tote' : 'tote';

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(12)} ${c.help}`);
  return `usage: ${program} <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\n'${program} <command> --help' lists a command's flags.`;
}

const [name, ...rest] = process.argv.slice(2);
const command = name ? commands[name] : undefined;
if (!command) {
  // Help asked for goes to stdout with success; anything else is a usage error on stderr.
  if (name === '--help' || name === '-h') {
    process.stdout.write(`${usage()}\n`);
    process.exit(0);
  }
  process.stderr.write(`${name ? `${program}: unknown command "${name}"\n\n` : ''}${usage()}\n`);
  process.exit(2);
}
process.exitCode = await command.run(rest);
