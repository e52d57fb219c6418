/**
 * Every check of command-line input that more than one command makes, in one place. Each throws a UsageError that
 * names the flag to fix: exit code 2, before anything is written or started.
 */
import { readFileSync } from 'node:fs';
import { loadConfig } from '../../activities/config';
import { hasPassword, passwordRefusal } from '../../activities/db';
import {
  aliasRefPattern,
  checkInput,
  isPostgresUrl,
  qualifiedNamePattern,
  tenantListProblems,
} from '../../activities/input-contract';
import type { RestoreConfig, TenantId } from '../../activities/restore-types';
import type { z } from 'zod';

import { UsageError } from './errors';

export { UsageError };

export function checkTenantRoot(name: string): string {
  if (!qualifiedNamePattern.test(name))
    throw new UsageError(`--tenant-root '${name}' is not schema.table, for example public.tenants.`);
  return name;
}

export { isPostgresUrl };

/** Checks a database reference for a workflow input: an alias, `alias/db`, or a postgres URL without password. */
export function checkDatabaseRef(flag: string, ref: string): string {
  // First, so that no later message echoes a reference with a password in it.
  if (hasPassword(ref)) throw new UsageError(passwordRefusal(`--${flag}`, flag));
  if (aliasRefPattern.test(ref)) return ref;
  if (!isPostgresUrl(ref))
    throw new UsageError(
      `--${flag} '${ref}' is neither a postgres:// URL nor an alias (TENANT_RESTORE_DB_<ALIAS> in the worker's environment).`,
    );
  let url: URL;
  try {
    url = new URL(ref);
  } catch {
    throw new UsageError(`--${flag} is not a valid URL.`);
  }
  if (!url.hostname) throw new UsageError(`--${flag} has no host.`);
  if (!url.pathname.replace(/^\//, ''))
    throw new UsageError(`--${flag} names no database (postgres://user@host:port/<database>).`);
  return ref;
}

/**
 * An integer flag within bounds. `name` is how the message names it (`--concurrency`, or `concurrency` for a
 * positional); `hint` follows the range in the message.
 */
export function parseIntegerFlag(name: string, text: string, min: number, max?: number, hint = ''): number {
  const n = Number(text);
  if (Number.isInteger(n) && n >= min && (max === undefined || n <= max)) return n;
  const range =
    max === undefined
      ? min === 1
        ? 'a positive integer'
        : `an integer of at least ${min}`
      : `an integer from ${min} to ${max}`;
  throw new UsageError(`${name} '${text}': ${range}${hint}.`);
}

/** `--tenants 1,2` or `--tenants-file f`, exactly one of them; undefined when neither is given and `required` is false. */
export function tenantsFromFlags(flags: { tenants?: string; 'tenants-file'?: string }, required: true): TenantId[];
export function tenantsFromFlags(
  flags: { tenants?: string; 'tenants-file'?: string },
  required: false,
): TenantId[] | undefined;
export function tenantsFromFlags(
  flags: { tenants?: string; 'tenants-file'?: string },
  required: boolean,
): TenantId[] | undefined {
  if (flags.tenants !== undefined && flags['tenants-file'] !== undefined)
    throw new UsageError('give either --tenants or --tenants-file, not both.');
  if (flags.tenants !== undefined) return parseTenantList(flags.tenants, '--tenants');
  if (flags['tenants-file'] !== undefined) return parseTenantsFile(flags['tenants-file']);
  if (required) throw new UsageError('missing --tenants 1,2,3 or --tenants-file <path>.');
  return undefined;
}

/** Parses `1,2,3`: no empty entries, no duplicates, only id characters. */
export function parseTenantList(text: string, origin: string): TenantId[] {
  const ids = text.split(',').map((s) => s.trim());
  return checkIds(ids.map((id, i) => ({ id, where: `${origin} entry ${i + 1}` })));
}

/** A tenants file: one id per line; blank lines and `#` comments are allowed, anything else is an error. */
export function parseTenantsFile(path: string): TenantId[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read --tenants-file ${path}: ${(error as Error).message}`);
  }
  return parseTenantText(text, path);
}

/** The text of a tenants file (or of a list discover wrote), `origin` naming it in messages. */
export function parseTenantText(text: string, origin: string): TenantId[] {
  const entries: Array<{ id: string; where: string }> = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const id = line.replace(/#.*$/, '').trim();
    if (id) entries.push({ id, where: `${origin} line ${i + 1}` });
  });
  return checkIds(entries);
}

function checkIds(entries: Array<{ id: string; where: string }>): TenantId[] {
  // Blank entries are named by where they stand; the rest go through the one list rule (which names an empty list).
  const empty = entries.filter((entry) => !entry.id).map((entry) => `${entry.where} is empty`);
  const listed = entries.filter((entry) => entry.id);
  const { problems, ids } = tenantListProblems(listed);
  const all = listed.length || !entries.length ? [...empty, ...problems] : empty;
  if (all.length)
    throw new UsageError(
      `bad tenant list:\n  - ${all.slice(0, 20).join('\n  - ')}${all.length > 20 ? `\n  ... and ${all.length - 20} more` : ''}`,
    );
  return ids;
}

/**
 * The workflow input a command is about to start, parsed with the same contract the worker parses it with
 * (activities/input-contract/): what the flags' own checks let through is still refused here, exit 2.
 */
export function checkStartInput<T>(workflow: string, schema: z.ZodType<T>, input: unknown): T {
  return checkInput(
    schema,
    input,
    (problems) => new UsageError(`the ${workflow} input these flags make is refused: ${problems.join('; ')}`),
  );
}

/** The restore config of --config, validated as the worker will validate it again when it builds the plan. */
export function loadConfigFlag(path: string): RestoreConfig {
  try {
    return loadConfig(path);
  } catch (error) {
    throw new UsageError(`--config: ${(error as Error).message}`);
  }
}

/** The one positional argument of the commands that act on a restore. */
export function oneRestoreId(positionals: string[], usage: string): string {
  if (positionals.length !== 1 || !positionals[0]) throw new UsageError(`give one restore id.\n\nusage: ${usage}`);
  return positionals[0];
}

/** --task-queue, else TENANT_RESTORE_TASK_QUEUE, else the workers' default. */
export function taskQueueFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.TENANT_RESTORE_TASK_QUEUE ?? 'tenant-restore';
}
