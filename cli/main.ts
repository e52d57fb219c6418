/**
 * The `tenant-restore` command. Each subcommand lives in cli/commands/ and is thin: it parses flags, calls a plain
 * function that returns data, prints it (human text, or JSON with --json) and returns the exit code.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from './client/input';
import { exitCodes, type Command } from './commands/common';
import { workerCommand } from './commands/worker';
import { planCommand } from './commands/plan';
import { drillCommand } from './commands/drill';
import { startCommand } from './commands/start';
import { statusCommand } from './commands/status';
import { approveCommand, cancelCommand, concurrencyCommand, pauseCommand, resumeCommand } from './commands/control';
import { reportCommand } from './commands/report';

const commands: Command[] = [
  workerCommand,
  planCommand,
  startCommand,
  statusCommand,
  pauseCommand,
  resumeCommand,
  cancelCommand,
  approveCommand,
  concurrencyCommand,
  reportCommand,
  drillCommand,
];

function version(): string {
  return (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
}

function help(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `tenant-restore ${version()}: bring deleted tenants back into a live shared PostgreSQL database from a backup.

usage: tenant-restore <command> [flags]     (tenant-restore <command> --help for its flags)

commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

environment:
  TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE        Temporal frontend (default 127.0.0.1:7233, namespace default)
  TEMPORAL_API_KEY | TEMPORAL_TLS_CERT/_KEY   Temporal Cloud or a TLS cluster
  AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION   S3 (path-style addressing)
  PGPASSFILE or PGPASSWORD                    database passwords; URLs passed to restores never carry one
  TENANT_RESTORE_DB_<ALIAS>                   lets --live/--scratch name a database by alias
  TENANT_RESTORE_TASK_QUEUE                   task queue (default tenant-restore)

exit codes:
  0  success: every tenant restored and validated
  1  finished, but some tenants failed (the report says which), or the operation failed
  2  bad input or usage: nothing was written
  3  a service (Temporal, S3, a database) could not be reached
`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name ? exitCodes.ok : exitCodes.usage;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${version()}\n`);
    return exitCodes.ok;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`tenant-restore: unknown command '${name}'. Run 'tenant-restore --help' for the list.\n`);
    return exitCodes.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: ${command.usage}\n\n${command.summary}\n`);
    return exitCodes.ok;
  }
  try {
    return await command.run(rest);
  } catch (error) {
    const e = error as Error & { code?: string };
    if (error instanceof UsageError) {
      process.stderr.write(`tenant-restore ${name}: ${e.message}\n`);
      return exitCodes.usage;
    }
    if (['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT'].includes(e.code ?? '') || /connect|unavailable/i.test(e.name)) {
      process.stderr.write(`tenant-restore ${name}: cannot reach a service: ${e.message}\n`);
      return exitCodes.unavailable;
    }
    process.stderr.write(`tenant-restore ${name}: ${e.message}\n`);
    return exitCodes.partial;
  }
}

if (require.main === module || process.argv[1]?.endsWith('tenant-restore')) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: Error) => {
      process.stderr.write(`tenant-restore: ${error.stack ?? error.message}\n`);
      process.exitCode = 1;
    },
  );
}
