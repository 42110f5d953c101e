#!/usr/bin/env node
// tote's single entry point: `tote controller` and `tote agent` run in the cluster; `tote doctor`, `status`, `why` and
// `salvage` are for people. The same program is kubectl's plugin when installed under the name `kubectl-tote`
// (`kubectl tote status`): kubectl runs it with the words after `tote`.
import { basename } from 'node:path';

type Run = (argv: string[]) => Promise<number>;

// Each command is imported only when it runs: the agent, paid for on every node, never evaluates the controller's
// modules (its signer's X.509 library alone is 12.5 MB resident) nor the people's commands (docs/benchmarks.md,
// "Footprint"). hack/build.ts splits the bundle along these imports.
const commands: Record<string, { load: () => Promise<Run>; help: string }> = {
  controller: {
    load: async () => (await import('./controller.ts')).runController,
    help: 'watch for pods stuck on lost images and salvage them (a Deployment)',
  },
  agent: {
    load: async () => (await import('./agent.ts')).runAgent,
    help: 'serve one node’s images to the controller and to peers (a DaemonSet)',
  },
  doctor: {
    load: async () => (await import('./doctor.ts')).runDoctor,
    help: 'check that tote is installed and able to salvage; non-zero exit on problems',
  },
  status: {
    load: async () => (await import('./plugin/status.ts')).runStatus,
    help: 'records in flight, endangered images and their copies, the controller and agents',
  },
  why: {
    load: async () => (await import('./plugin/why.ts')).runWhy,
    help: 'POD: in scope or not, which policy, which record, what happens next',
  },
  salvage: {
    load: async () => (await import('./plugin/salvage.ts')).runSalvage,
    help: 'POD: ask tote to put the pod’s image on its node (creates the SalvageRecord)',
  },
  migrate: {
    load: async () => (await import('./migrate/index.ts')).runMigrate,
    help: 'records | policy: the way over from tote 0.x (docs/migrating.md)',
  },
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
process.exitCode = await (await command.load())(rest);
