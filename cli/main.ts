/**
 * The `tenant-restore` command. Each subcommand lives in cli/commands/ and is thin: it parses flags, calls a plain
 * function that returns data, prints it (human text, or JSON with --json) and returns the exit code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeFailure } from './client/failures';
import { closest, exitCodes, type Command } from './commands/common';

/**
 * The commands, loaded only when run: `--help` and a typo load none of them (the worker's SDK alone takes most of a
 * second). Each summary is repeated from its module; test/unit/cli-help.test.ts keeps the two equal.
 */
// `require`, not `import()`: the CLI is CommonJS (compiled in dist/, or through tsx's hook, which compiles required .ts
// files, in a checkout without dist); a dynamic import() would go to Node's ESM loader, which does not resolve
// extensionless TypeScript paths.
/* eslint-disable @typescript-eslint/no-require-imports */
export const commands: Array<{ name: string; summary: string; load: () => Command }> = [
  {
    name: 'worker',
    summary: 'run a worker that executes restores (stops on SIGINT/SIGTERM)',
    load: () => (require('./commands/worker') as typeof import('./commands/worker')).workerCommand,
  },
  {
    name: 'plan',
    summary:
      'read both catalogs and print the restore plan: order, ownership paths, cycles, drift, row estimates (writes nothing)',
    load: () => (require('./commands/plan') as typeof import('./commands/plan')).planCommand,
  },
  {
    name: 'discover',
    summary:
      'who was hit: classify every tenant of the backup against live (absent, partial, changed...), writes nothing',
    load: () => (require('./commands/discover') as typeof import('./commands/discover')).discoverCommand,
  },
  {
    name: 'when',
    summary:
      "when were these tenants deleted: the deleting commits' xids, times and LSNs (T0, T1) from the WAL archive",
    load: () => (require('./commands/when') as typeof import('./commands/when')).whenCommand,
  },
  {
    name: 'start',
    summary: 'start a restore of some tenants from a backup (--wait to follow it to the end)',
    load: () => (require('./commands/start') as typeof import('./commands/start')).startCommand,
  },
  {
    name: 'status',
    summary: "show a restore's progress: counts by phase, failed tenants; --watch for a live progress bar",
    load: () => (require('./commands/status') as typeof import('./commands/status')).statusCommand,
  },
  {
    name: 'list',
    summary: 'restores, drills and discovers, newest first, filterable by status and kind',
    load: () => (require('./commands/inspect') as typeof import('./commands/inspect')).listCommand,
  },
  {
    name: 'describe',
    summary: 'one restore whole: its input, phase counts, failures, report location and Web UI link',
    load: () => (require('./commands/inspect') as typeof import('./commands/inspect')).describeCommand,
  },
  {
    name: 'pause',
    summary: 'stop starting tenants; running tenants finish',
    load: () => (require('./commands/control') as typeof import('./commands/control')).pauseCommand,
  },
  {
    name: 'resume',
    summary: 'start tenants again after pause',
    load: () => (require('./commands/control') as typeof import('./commands/control')).resumeCommand,
  },
  {
    name: 'cancel',
    summary: 'stop the restore: no new tenants, running ones are cancelled, then a report',
    load: () => (require('./commands/control') as typeof import('./commands/control')).cancelCommand,
  },
  {
    name: 'approve',
    summary: 'release the actions held for approval, per tenant (--tenants) or for all',
    load: () => (require('./commands/control') as typeof import('./commands/control')).approveCommand,
  },
  {
    name: 'concurrency',
    summary: 'change how many tenants a running restore restores at once',
    load: () => (require('./commands/control') as typeof import('./commands/control')).concurrencyCommand,
  },
  {
    name: 'report',
    summary: 'print the report of a finished restore (Markdown, or --json)',
    load: () => (require('./commands/report') as typeof import('./commands/report')).reportCommand,
  },
  {
    name: 'drill',
    summary: 'restore drills: schedule, run now, list past drills with their figures',
    load: () => (require('./commands/drill') as typeof import('./commands/drill')).drillCommand,
  },
  {
    name: 'config',
    summary: 'print the JSON Schema of the config file (for editors), or check a config file',
    load: () => (require('./commands/config') as typeof import('./commands/config')).configCommand,
  },
  {
    name: 'completion',
    summary: 'print a shell completion script (bash or zsh)',
    load: () => (require('./commands/completion') as typeof import('./commands/completion')).completionCommand,
  },
];
/* eslint-enable @typescript-eslint/no-require-imports */

/** `--output text|json` (also `--output=json`), the form other tools use: `json` is `--json`, `text` the default. */
export function outputFlag(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const value = arg === '--output' ? argv[++i] : arg.startsWith('--output=') ? arg.slice('--output='.length) : null;
    if (value === null) out.push(arg);
    else if (value === 'json') out.push('--json');
    else if (value !== 'text') throw new Error(`--output '${value ?? ''}': text or json.`);
  }
  return out;
}

function version(): string {
  // cli/main.ts in a checkout, dist/cli/main.js when built: package.json is one or two folders up.
  const file = [join(__dirname, '..', 'package.json'), join(__dirname, '..', '..', 'package.json')].find(existsSync)!;
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
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
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    const guess = closest(
      name,
      commands.map((c) => c.name),
    );
    process.stderr.write(
      `tenant-restore: unknown command '${name}'.${guess ? ` Did you mean '${guess}'?` : ''} Run 'tenant-restore --help' for the list.\n`,
    );
    return exitCodes.usage;
  }
  const command = entry.load();
  let args: string[];
  try {
    args = outputFlag(rest);
  } catch (error) {
    process.stderr.write(`tenant-restore ${name}: ${(error as Error).message}\n`);
    return exitCodes.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: ${command.usage}\n\n${entry.summary}\n`);
    return exitCodes.ok;
  }
  try {
    return await command.run(args);
  } catch (error) {
    const failure = describeFailure(error);
    process.stderr.write(`tenant-restore ${name}: ${failure.message}\n`);
    return failure.code;
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
