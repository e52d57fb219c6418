/**
 * Loads and validates the config file (`--config`, JSON matching RestoreConfig). Every problem is reported at once,
 * each with the JSON path that is wrong, so that an operator fixes the file in one pass.
 */
import { readFileSync } from 'node:fs';
import { InvalidConfigError } from './errors';
import type { RestoreConfig } from './restore-types';

const qualifiedName = /^[^.\s]+\.[^.\s]+$/;

export function parseConfig(text: string, source = 'config'): RestoreConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new InvalidConfigError(`${source} is not valid JSON: ${(error as Error).message}. Fix the file and run again.`);
  }
  const problems: string[] = [];
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InvalidConfigError(`${source} must be a JSON object (see RestoreConfig in the README).`);
  }
  const c = raw as Record<string, unknown>;
  const known = new Set(['logicalForeignKeys', 'excludeTables', 'chunkRows', 'actions']);
  for (const key of Object.keys(c)) if (!known.has(key)) problems.push(`${key}: unknown field (known: ${[...known].join(', ')})`);

  const isNames = (v: unknown) => Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string' && s.length > 0);
  if (c.logicalForeignKeys !== undefined) {
    if (!Array.isArray(c.logicalForeignKeys)) problems.push('logicalForeignKeys: must be an array');
    else c.logicalForeignKeys.forEach((fk: Record<string, unknown>, i) => {
      const at = `logicalForeignKeys[${i}]`;
      if (typeof fk !== 'object' || fk === null) return problems.push(`${at}: must be an object`);
      for (const side of ['from', 'to'] as const) {
        if (typeof fk[side] !== 'string' || !qualifiedName.test(fk[side])) problems.push(`${at}.${side}: must be 'schema.table'`);
      }
      if (!isNames(fk.columns)) problems.push(`${at}.columns: must be a non-empty array of column names`);
      if (!isNames(fk.referencedColumns)) problems.push(`${at}.referencedColumns: must be a non-empty array of column names`);
      else if (isNames(fk.columns) && (fk.columns as string[]).length !== (fk.referencedColumns as string[]).length) {
        problems.push(`${at}: columns and referencedColumns must have the same length`);
      }
    });
  }
  if (c.excludeTables !== undefined) {
    if (!Array.isArray(c.excludeTables)) problems.push('excludeTables: must be an array');
    else c.excludeTables.forEach((t, i) => {
      if (typeof t !== 'string' || !qualifiedName.test(t)) problems.push(`excludeTables[${i}]: must be 'schema.table'`);
    });
  }
  if (c.chunkRows !== undefined && !(Number.isInteger(c.chunkRows) && (c.chunkRows as number) > 0)) {
    problems.push('chunkRows: must be a positive integer');
  }
  if (c.actions !== undefined) {
    if (!Array.isArray(c.actions)) problems.push('actions: must be an array');
    else c.actions.forEach((a: Record<string, unknown>, i) => {
      const at = `actions[${i}]`;
      if (typeof a !== 'object' || a === null) return problems.push(`${at}: must be an object`);
      if (typeof a.name !== 'string' || !a.name) problems.push(`${at}.name: must be a non-empty string`);
      if (a.type === 'sql') {
        if (typeof a.sql !== 'string' || !a.sql.trim()) problems.push(`${at}.sql: must be a SQL statement`);
      } else if (a.type === 'webhook') {
        if (typeof a.url !== 'string' || !/^https?:\/\//.test(a.url)) problems.push(`${at}.url: must be an http(s) URL`);
        if (a.method !== undefined && a.method !== 'POST' && a.method !== 'PUT') problems.push(`${at}.method: must be POST or PUT`);
        if (a.timeoutSeconds !== undefined && !(typeof a.timeoutSeconds === 'number' && a.timeoutSeconds > 0 && a.timeoutSeconds <= 600)) problems.push(`${at}.timeoutSeconds: must be a number of seconds from 0 to 600`);
      } else problems.push(`${at}.type: must be 'sql' or 'webhook'`);
    });
  }
  if (problems.length) {
    throw new InvalidConfigError(`${source} is not a valid restore config:\n  - ${problems.join('\n  - ')}`, { problems });
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
