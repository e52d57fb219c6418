/** `tenant-restore config schema|check`: the config file's JSON Schema for editors, and a check of a file. */
import { UsageError } from '../client/errors';
import { exitCodes, parseFlags, print, type Command, type Flags } from './common';

// The schema (zod) loads when the command runs, not with this module: main.ts loads it for `config --help`.
/* eslint-disable @typescript-eslint/no-require-imports */
const configs = () => require('../../activities/config') as typeof import('../../activities/config');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage = `tenant-restore config schema
       tenant-restore config check <file> [--json]

  schema  prints the JSON Schema of the config file (--config of start, plan and drill) for editors; the same is in
          docs/restore-config.schema.json. Point a config at it with "$schema": "<path or URL of the schema>", or map
          it in VS Code's "json.schemas" setting
  check   checks a config file as start, plan, drill and the worker do, and prints ok, or every problem with its JSON
          path (also what JSON Schema cannot say: credentials in webhook URLs and headers, two actions with one name)
  --json  check: { file, ok, problems, message }

exit codes: 0 the config is valid | 2 it is not, is not JSON or cannot be read (check prints why), or bad usage`;

const flags = { json: { type: 'boolean' } } as const satisfies Flags;
const subcommands = ['schema', 'check'] as const;

export const configCommand: Command = {
  name: 'config',
  summary: 'print the JSON Schema of the config file (for editors), or check a config file',
  usage,
  flags,
  subcommands,
  fileArguments: true,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, flags, usage);
    const [sub, ...rest] = positionals;
    if (sub === 'schema' && rest.length === 0) {
      process.stdout.write(`${JSON.stringify(configs().restoreConfigJsonSchema(), null, 2)}\n`);
      return exitCodes.ok;
    }
    if (sub === 'check' && rest.length === 1) {
      const result = configs().checkConfigFile(rest[0]!);
      print(!!values.json, result, () => result.message);
      return result.ok ? exitCodes.ok : exitCodes.usage;
    }
    throw new UsageError(`expected 'schema', or 'check <file>'.\n\nusage: ${usage}`);
  },
};
