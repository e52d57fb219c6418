/**
 * Loads and validates the config file (`--config`, JSON matching RestoreConfig). Every problem is reported at once,
 * each with the JSON path that is wrong, so that an operator fixes the file in one pass.
 */
import { readFileSync } from 'node:fs';
import { InvalidConfigError } from './errors';
import type { RestoreConfig } from './restore-types';
import { reenableActionTimeoutSeconds } from './restore-types';

const qualifiedName = /^[^.\s]+\.[^.\s]+$/;

/**
 * Words that make a URL query parameter a credential: `token`, `access_token`, `apiKey`, `X-Amz-Signature`, `sig`...
 * A name is split into words (separators and camelCase), so that `author` or `keyword` are not taken for secrets.
 */
const secretQueryWords = new Set([
  'token',
  'key',
  'apikey',
  'secret',
  'signature',
  'sig',
  'password',
  'passwd',
  'pwd',
  'auth',
  'authorization',
  'credential',
  'credentials',
  'jwt',
  'bearer',
]);
export function isSecretQueryName(name: string): boolean {
  const words = name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
  return words.some((w) => secretQueryWords.has(w));
}

/** A header whose value is a secret: Authorization, Cookie, or any name containing token, key, secret, password, auth. */
export function isSecretHeaderName(name: string): boolean {
  return /cookie|token|key|secret|passw|auth|credential|signature/i.test(name);
}

/** What is wrong with a webhook URL (empty when nothing): the config and workflow history must not carry credentials. */
export function webhookUrlProblems(url: string, at: string): string[] {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return [`${at}: must be an http(s) URL`];
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') return [`${at}: must be an http(s) URL`];
  const problems: string[] = [];
  if (parsed.username || parsed.password) {
    problems.push(
      `${at}: carries credentials (user:password@), which would be stored in the config and in workflow history; remove them and send an 'Authorization' header with the value 'env:NAME', NAME being a variable of the worker's environment`,
    );
  }
  const secrets = [...new Set([...parsed.searchParams.keys()].filter(isSecretQueryName))];
  if (secrets.length) {
    problems.push(
      `${at}: its query carries ${secrets.map((n) => `'${n}'`).join(', ')}, which looks like a credential and would be stored in the config and in workflow history; send it in a header with the value 'env:NAME' (resolved from the worker's environment) instead`,
    );
  }
  return problems;
}

export function parseConfig(text: string, source = 'config'): RestoreConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new InvalidConfigError(
      `${source} is not valid JSON: ${(error as Error).message}. Fix the file and run again.`,
    );
  }
  return validateConfig(raw, source);
}

/**
 * Checks a config object (parsed from a file, or carried in a workflow input: restores and drills alike). Returns it
 * typed, or throws InvalidConfigError listing every problem with its JSON path.
 */
export function validateConfig(raw: unknown, source = 'config'): RestoreConfig {
  const problems: string[] = [];
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidConfigError(`${source} must be a JSON object (see RestoreConfig in the README).`);
  }
  const c = raw as Record<string, unknown>;
  const known = new Set(['logicalForeignKeys', 'excludeTables', 'chunkRows', 'actions']);
  for (const key of Object.keys(c))
    if (!known.has(key)) problems.push(`${key}: unknown field (known: ${[...known].join(', ')})`);

  const isNames = (v: unknown) =>
    Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string' && s.length > 0);
  if (c.logicalForeignKeys !== undefined) {
    if (!Array.isArray(c.logicalForeignKeys)) problems.push('logicalForeignKeys: must be an array');
    else
      c.logicalForeignKeys.forEach((fk: Record<string, unknown>, i) => {
        const at = `logicalForeignKeys[${i}]`;
        if (typeof fk !== 'object' || fk === null) return problems.push(`${at}: must be an object`);
        for (const side of ['from', 'to'] as const) {
          if (typeof fk[side] !== 'string' || !qualifiedName.test(fk[side]))
            problems.push(`${at}.${side}: must be 'schema.table'`);
        }
        if (!isNames(fk.columns)) problems.push(`${at}.columns: must be a non-empty array of column names`);
        if (!isNames(fk.referencedColumns))
          problems.push(`${at}.referencedColumns: must be a non-empty array of column names`);
        else if (isNames(fk.columns) && (fk.columns as string[]).length !== (fk.referencedColumns as string[]).length) {
          problems.push(`${at}: columns and referencedColumns must have the same length`);
        }
      });
  }
  if (c.excludeTables !== undefined) {
    if (!Array.isArray(c.excludeTables)) problems.push('excludeTables: must be an array');
    else
      c.excludeTables.forEach((t, i) => {
        if (typeof t !== 'string' || !qualifiedName.test(t))
          problems.push(`excludeTables[${i}]: must be 'schema.table'`);
      });
  }
  if (c.chunkRows !== undefined && !(Number.isInteger(c.chunkRows) && (c.chunkRows as number) > 0)) {
    problems.push('chunkRows: must be a positive integer');
  }
  if (c.actions !== undefined) {
    if (!Array.isArray(c.actions)) problems.push('actions: must be an array');
    else {
      const names = new Map<string, number>();
      c.actions.forEach((a: Record<string, unknown>, i) => {
        const at = `actions[${i}]`;
        if (typeof a !== 'object' || a === null) return problems.push(`${at}: must be an object`);
        if (typeof a.name !== 'string' || !a.name) problems.push(`${at}.name: must be a non-empty string`);
        else if (names.has(a.name)) {
          // The name is part of the idempotency key (restoreId/tenantId/action): two actions with one name would share it.
          problems.push(
            `${at}.name: '${a.name}' is already the name of actions[${names.get(a.name)}]; give every action its own name (it is part of the idempotency key)`,
          );
        } else names.set(a.name, i);
        // A string "false" is truthy: it would hold the action for approval, and "true" would read as a typo.
        if (a.requiresApproval !== undefined && typeof a.requiresApproval !== 'boolean') {
          problems.push(
            `${at}.requiresApproval: must be true or false (a JSON boolean, not ${JSON.stringify(a.requiresApproval)})`,
          );
        }
        if (a.type === 'sql') {
          if (typeof a.sql !== 'string' || !a.sql.trim()) problems.push(`${at}.sql: must be a SQL statement`);
        } else if (a.type === 'webhook') {
          if (typeof a.url !== 'string') problems.push(`${at}.url: must be an http(s) URL`);
          else problems.push(...webhookUrlProblems(a.url, `${at}.url`));
          if (a.method !== undefined && a.method !== 'POST' && a.method !== 'PUT')
            problems.push(`${at}.method: must be POST or PUT`);
          if (a.headers !== undefined) {
            if (typeof a.headers !== 'object' || a.headers === null || Array.isArray(a.headers))
              problems.push(`${at}.headers: must be an object of header names to string values`);
            else
              for (const [name, value] of Object.entries(a.headers as Record<string, unknown>)) {
                if (typeof value !== 'string') problems.push(`${at}.headers.${name}: must be a string`);
                else if (isSecretHeaderName(name) && !/^env:[A-Za-z_][A-Za-z0-9_]*$/.test(value)) {
                  problems.push(
                    `${at}.headers.${name}: looks like a secret and must be given as 'env:NAME' (NAME: a variable of the worker's environment), so that its value is in neither the config nor workflow history`,
                  );
                }
              }
          }
          const limit = reenableActionTimeoutSeconds;
          if (
            a.timeoutSeconds !== undefined &&
            !(typeof a.timeoutSeconds === 'number' && a.timeoutSeconds > 0 && a.timeoutSeconds < limit)
          ) {
            problems.push(
              `${at}.timeoutSeconds: must be a number of seconds above 0 and below ${limit} (the re-enable activity's own timeout)`,
            );
          }
        } else problems.push(`${at}.type: must be 'sql' or 'webhook'`);
      });
    }
  }
  if (problems.length) {
    throw new InvalidConfigError(`${source} is not a valid restore config:\n  - ${problems.join('\n  - ')}`, {
      problems,
    });
  }
  return c as RestoreConfig;
}

export function loadConfig(path: string): RestoreConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new InvalidConfigError(`cannot read config file ${path}: ${(error as Error).message}`);
  }
  return parseConfig(text, path);
}
