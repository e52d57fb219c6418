/** What every CLI command shares: its shape, exit codes, flag parsing and JSON or human output. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../client/input';

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

export interface Command {
  name: string;
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
}

/** node:util parseArgs, with unknown flags turned into a UsageError that names the command's usage. */
export function parseFlags<T extends ParseArgsConfig['options']>(argv: string[], options: T, usage: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\n\nusage: ${usage}`);
  }
}

export function print(json: boolean, data: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : `${human()}\n`);
}
