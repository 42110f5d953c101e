#!/usr/bin/env node
// tote's single entry point: `tote controller`, `tote agent`, `tote doctor`. One image, one binary, three jobs.
import { runAgent } from './agent.ts';
import { runController } from './controller.ts';
import { runDoctor } from './doctor.ts';

const commands: Record<string, { run: (argv: string[]) => Promise<number>; help: string }> = {
  controller: { run: runController, help: 'watch for pods stuck on lost images and salvage them (a Deployment)' },
  agent: { run: runAgent, help: 'serve one node’s images to the controller and to peers (a DaemonSet)' },
  doctor: { run: runDoctor, help: 'check that tote is installed and able to salvage; non-zero exit on problems' },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(12)} ${c.help}`);
  return `usage: tote <command> [flags]\n\ncommands:\n${lines.join('\n')}\n\n'tote <command> --help' lists a command's flags.`;
}

const [name, ...rest] = process.argv.slice(2);
const command = name ? commands[name] : undefined;
if (!command) {
  // Help asked for goes to stdout with success; anything else is a usage error on stderr.
  if (name === '--help' || name === '-h') {
    process.stdout.write(`${usage()}\n`);
    process.exit(0);
  }
  process.stderr.write(`${name ? `tote: unknown command "${name}"\n\n` : ''}${usage()}\n`);
  process.exit(2);
}
process.exitCode = await command.run(rest);
