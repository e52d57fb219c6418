/** What every CLI command shares: its shape, exit codes, flag parsing and JSON or human output. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../client/errors';

/** Exit codes, documented in `tenant-restore --help`. */
export const exitCodes = {
  ok: 0,
  /** The command ran, but some tenants failed (or a drill failed); the report says which. */
  partial: 1,
  /** Bad input or usage; nothing was written. */
  usage: 2,
  /** A service (Temporal, S3, a database) could not be reached. */
  unavailable: 3,
} as const;

/** One flag, as node:util parseArgs takes it, and what shell completion offers for its value. */
export type FlagSpec = NonNullable<ParseArgsConfig['options']>[string] & {
  /** The values it takes (`--conflict skip|overwrite|fail`): completion offers them. */
  choices?: readonly string[];
  /** Its value is a file path: completion offers files. */
  file?: boolean;
};
export type Flags = Record<string, FlagSpec>;

/**
 * The flags `start` and `discover` share, checked by sourceFromFlags (cli/client/source.ts): where the backup is (or
 * scratch), live, the tenant root, the config, the id, the artifacts and the task queue.
 */
export const sourceFlags = {
  backup: { type: 'string' },
  'backup-prefix': { type: 'string' },
  at: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  'scratch-server': { type: 'string' },
  scratch: { type: 'string' },
  live: { type: 'string' },
  'tenant-root': { type: 'string' },
  config: { type: 'string', file: true },
  id: { type: 'string' },
  'keep-scratch': { type: 'boolean' },
  'allow-unverified-backup': { type: 'boolean' },
  'unsafe-scratch-on-live-server': { type: 'boolean' },
  'unsafe-scratch-as-live-role': { type: 'boolean' },
  'unsafe-scratch-as-superuser': { type: 'boolean' },
  artifacts: { type: 'string' },
  'task-queue': { type: 'string' },
} satisfies Flags;

export interface Command {
  name: string;
  summary: string;
  usage: string;
  /**
   * Its flags: run() parses argv with them (parseFlags); `tenant-restore completion` and test/unit/cli-completion.test.ts
   * (every flag is in the usage) read them.
   */
  flags: Flags;
  /** The words its first argument may be (`drill run`, `config check`), for completion. */
  subcommands?: readonly string[];
  /** Its other arguments are files (`config check <file>`), for completion. */
  fileArguments?: boolean;
  run(argv: string[]): Promise<number>;
}

/**
 * node:util parseArgs, with unknown flags turned into a UsageError that names the command's usage. A flag given twice
 * is refused too: parseArgs would keep the last value silently, and `--live prod ... --live staging` typed in a hurry
 * must not pick one for the operator.
 */
export function parseFlags<T extends ParseArgsConfig['options']>(argv: string[], options: T, usage: string) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true, tokens: true });
  } catch (error) {
    const unknown = /Unknown option '(--?[^']+)'/.exec((error as Error).message)?.[1];
    const guess = unknown ? closest(unknown.replace(/^-+/, ''), Object.keys(options ?? {})) : undefined;
    throw new UsageError(`${(error as Error).message}${guess ? `\nDid you mean --${guess}?` : ''}\n\nusage: ${usage}`);
  }
  const seen = new Map<string, string[]>();
  for (const token of parsed.tokens ?? []) {
    if (token.kind !== 'option' || options?.[token.name]?.multiple) continue;
    seen.set(token.name, [...(seen.get(token.name) ?? []), token.value ?? 'true']);
  }
  for (const [name, values] of seen)
    if (values.length > 1)
      throw new UsageError(
        `--${name} is given ${values.length} times (${values.map((v) => `'${v}'`).join(', ')}): give it once.`,
      );
  const { tokens: _tokens, ...result } = parsed;
  return result;
}

export function print(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human()}\n`);
}

/** The name nearest to `typed` (at most 2 edits; a swap of two neighbours is one edit), for "did you mean". */
export function closest(typed: string, names: string[]): string | undefined {
  const distance = (a: string, b: string): number => {
    const d = Array.from({ length: a.length + 1 }, (_, i) =>
      Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
    );
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++) {
        const cost = a[i - 1] === b[j - 1] ? 0 : 1;
        d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
        if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
          d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
      }
    return d[a.length]![b.length]!;
  };
  const best = names.map((n) => ({ n, d: distance(typed, n) })).sort((x, y) => x.d - y.d)[0];
  return best && best.d <= 2 ? best.n : undefined;
}
