/**
 * The config file (`--config`, JSON matching RestoreConfig): one zod schema, `restoreConfigSchema`, checks it wherever
 * it comes from (start, plan, drill, and the worker for a config carried in a workflow input), and gives editors its
 * JSON Schema (`tenant-restore config schema`, docs/restore-config.schema.json). Every problem is reported at once,
 * each with the JSON path that is wrong, so that an operator fixes the file in one pass.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { InvalidConfigError } from './errors';
import { qualifiedNamePattern } from './input-contract';
import type { RestoreConfig } from './restore-types';
import { reenableActionTimeoutSeconds } from './restore-types';
import { envHeaderProblem, isSecretHeaderName, webhookEnvPrefix, webhookUrlProblems } from './config-webhooks';
export * from './config-webhooks';

// ---------------------------------------------------------------------------------------------------------------
// the schema. Each message is what follows `<JSON path>: ` in the list of problems. Checks that JSON Schema cannot
// say (credentials in URLs and headers, one name per action, equal column counts) are refinements: editors do not
// see them, `config check` and every command do.

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** An object that refuses the fields it does not know, naming those it does (a typo must not be ignored). */
function strictObject<S extends z.core.$ZodLooseShape>(shape: S) {
  const known = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown field (known: ${known})` : 'must be an object'),
  });
}

const tableName = z
  .string({ error: "must be 'schema.table'" })
  .regex(qualifiedNamePattern, { error: "must be 'schema.table'" });

const columnNames = z
  .array(z.string({ error: 'must be a column name' }).min(1, { error: 'must be a column name' }), {
    error: 'must be a non-empty array of column names',
  })
  .min(1, { error: 'must be a non-empty array of column names' });

const isColumnNames = (value: unknown): value is string[] =>
  Array.isArray(value) && value.length > 0 && value.every((s) => typeof s === 'string' && s.length > 0);

const logicalForeignKey = strictObject({
  from: tableName.meta({ description: '`schema.table` holding the referencing columns' }),
  columns: columnNames.meta({ description: 'the referencing columns' }),
  to: tableName.meta({ description: '`schema.table` being referenced' }),
  referencedColumns: columnNames.meta({ description: 'a unique key of `to`, in the order of `columns`' }),
})
  .superRefine(
    (fk, ctx) => {
      const { columns, referencedColumns } = fk as Record<string, unknown>;
      if (isColumnNames(columns) && isColumnNames(referencedColumns) && columns.length !== referencedColumns.length)
        ctx.addIssue({ code: 'custom', message: 'columns and referencedColumns must have the same length' });
    },
    // Also when another field is wrong: every problem at once.
    { when: (payload) => isObject(payload.value) },
  )
  .meta({ description: 'a foreign key the schema does not declare' });

const actionName = z
  .string({ error: 'must be a non-empty string' })
  .min(1, { error: 'must be a non-empty string' })
  .meta({ description: 'unique among the actions: part of the idempotency key restoreId/tenantId/action' });

// A string "false" is truthy: it would hold the action for approval, and "true" would read as a typo.
const requiresApproval = z
  .boolean({ error: (issue) => `must be true or false (a JSON boolean, not ${JSON.stringify(issue.input)})` })
  .optional()
  .meta({ description: 'true: the action waits for `tenant-restore approve`' });

const sqlAction = strictObject({
  name: actionName,
  type: z.literal('sql'),
  sql: z.string({ error: 'must be a SQL statement' }).regex(/\S/, { error: 'must be a SQL statement' }).meta({
    description: 'runs against live with $1 = tenant id and $2 = idempotency key (restoreId/tenantId/action)',
  }),
  requiresApproval,
});

const webhookUrl = z
  .string({ error: 'must be an http(s) URL' })
  .superRefine((url, ctx) => {
    for (const message of webhookUrlProblems(url)) ctx.addIssue({ code: 'custom', message });
  })
  .meta({
    description: 'http(s), without credentials (user:password@, a token in the query): use headers with env:NAME',
  });

const envReference = /^env:[A-Za-z_][A-Za-z0-9_]*$/;
const headers = z
  .record(z.string(), z.string({ error: 'must be a string' }), {
    error: 'must be an object of header names to string values',
  })
  .superRefine(
    (value, ctx) => {
      for (const [name, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v === 'string' && isSecretHeaderName(name) && !envReference.test(v))
          ctx.addIssue({
            code: 'custom',
            path: [name],
            message: `looks like a secret and must be given as 'env:NAME' (NAME: a variable of the worker's environment named ${webhookEnvPrefix}*), so that its value is in neither the config nor workflow history`,
          });
        const problem = typeof v === 'string' ? envHeaderProblem(v) : undefined;
        if (problem) ctx.addIssue({ code: 'custom', path: [name], message: problem });
      }
    },
    { when: (payload) => isObject(payload.value) },
  )
  .meta({
    description:
      "header values; 'env:NAME' is read from the worker's environment (only names that start with TENANT_RESTORE_WEBHOOK_), and must be used for Authorization, Cookie, and any name with token, key, secret, password or auth",
  });

const timeoutMessage = `must be a number of seconds above 0 and below ${reenableActionTimeoutSeconds} (the re-enable activity's own timeout)`;
const webhookAction = strictObject({
  name: actionName,
  type: z.literal('webhook'),
  url: webhookUrl,
  method: z.enum(['POST', 'PUT'], { error: 'must be POST or PUT' }).optional(),
  headers: headers.optional(),
  timeoutSeconds: z
    .number({ error: timeoutMessage })
    .gt(0, { error: timeoutMessage })
    .lt(reenableActionTimeoutSeconds, { error: timeoutMessage })
    .optional()
    .meta({ description: 'a call that has not answered after this long is abandoned and retried (default 30)' }),
  requiresApproval,
});

/** What every action has, checked on its own when its type is unknown (the union then checks nothing else). */
const actionCommon = z.object({ name: actionName, requiresApproval });

const actions = z
  .array(
    z.discriminatedUnion('type', [sqlAction, webhookAction], {
      error: (issue) => (issue.code === 'invalid_union' ? "must be 'sql' or 'webhook'" : 'must be an object'),
    }),
    { error: 'must be an array' },
  )
  .superRefine(
    (list, ctx) => {
      const names = new Map<string, number>();
      (list as unknown[]).forEach((action, i) => {
        if (!isObject(action)) return;
        if (action.type !== 'sql' && action.type !== 'webhook')
          for (const issue of actionCommon.safeParse(action).error?.issues ?? [])
            ctx.addIssue({ code: 'custom', path: [i, ...issue.path], message: issue.message });
        const { name } = action;
        if (typeof name !== 'string' || !name) return;
        const first = names.get(name);
        // The name is part of the idempotency key (restoreId/tenantId/action): two actions with one name would share it.
        if (first === undefined) names.set(name, i);
        else
          ctx.addIssue({
            code: 'custom',
            path: [i, 'name'],
            message: `'${name}' is already the name of actions[${first}]; give every action its own name (it is part of the idempotency key)`,
          });
      });
    },
    { when: (payload) => Array.isArray(payload.value) },
  )
  .meta({ description: 'post-restore actions (switch billing and apps back on), run per tenant after validation' });

/** The config file. Every field is optional. */
export const restoreConfigSchema = strictObject({
  logicalForeignKeys: z
    .array(logicalForeignKey, { error: 'must be an array' })
    .optional()
    .meta({ description: 'foreign keys the schema does not declare, which the plan follows like declared ones' }),
  excludeTables: z
    .array(tableName, { error: 'must be an array' })
    .optional()
    .meta({ description: '`schema.table` names never written by a restore (sessions, caches)' }),
  chunkRows: z
    .int({ error: 'must be a positive integer' })
    .positive({ error: 'must be a positive integer' })
    .optional()
    .meta({
      description:
        'a tenant with more rows than this in one table is copied in idempotent chunks instead of one transaction',
    }),
  actions: actions.optional(),
  // Editors find the JSON Schema through it; the restore ignores it.
  $schema: z
    .string({ error: 'must be a string' })
    .optional()
    .meta({ description: 'the JSON Schema of this file, for editors (docs/restore-config.schema.json); ignored' }),
}).meta({
  title: 'tenant-restore config (--config)',
  description:
    'logical foreign keys, excluded tables, chunked copies and re-enable actions of a restore. `tenant-restore config check <file>` also checks what this schema cannot: credentials in webhook URLs and headers, one name per action.',
});

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Fails to compile when the schema and the RestoreConfig type (restore-types.ts, which workflows import) differ. */
const schemaMatchesType: Equal<Omit<z.output<typeof restoreConfigSchema>, '$schema'>, RestoreConfig> = true;
void schemaMatchesType;

/** The JSON Schema of the config file (draft-07, which editors support best), as docs/restore-config.schema.json holds it. */
export function restoreConfigJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(restoreConfigSchema, { target: 'draft-07', io: 'input' }) as Record<string, unknown>;
}

/** `actions[1].url`, `headers.X-Api-Key`: the JSON path of an issue, as the problems name it. */
function jsonPath(path: readonly PropertyKey[]): string {
  return path
    .map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`))
    .join('');
}

/** What is wrong with a config object, one line per problem (`<JSON path>: <what>`); empty when nothing. */
export function configProblems(raw: unknown): string[] {
  return checkConfig(raw).problems;
}

function checkConfig(raw: unknown): { config?: z.output<typeof restoreConfigSchema>; problems: string[] } {
  const result = restoreConfigSchema.safeParse(raw);
  if (result.success) return { config: result.data, problems: [] };
  const found = result.error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ path: [...issue.path, key], message: issue.message, unknown: true }))
      : [{ path: issue.path, message: issue.message, unknown: false }],
  );
  // In the file's order: unknown top-level fields first, then field by field and element by element (zod reports
  // in the schema's order, and refinements, such as a duplicate action name, after the fields).
  const fields = isObject(raw) ? Object.keys(raw) : [];
  const rank = (p: (typeof found)[number]) =>
    p.unknown && p.path.length === 1
      ? [-1, 0]
      : [fields.indexOf(String(p.path[0])), typeof p.path[1] === 'number' ? p.path[1] : -1];
  const problems = found
    .map((p) => ({ ...p, rank: rank(p) }))
    .sort((a, b) => a.rank[0]! - b.rank[0]! || a.rank[1]! - b.rank[1]!)
    .map((p) => `${jsonPath(p.path)}: ${p.message}`);
  return { problems };
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
 * typed, without `$schema`, or throws InvalidConfigError listing every problem with its JSON path.
 */
export function validateConfig(raw: unknown, source = 'config'): RestoreConfig {
  if (!isObject(raw)) {
    throw new InvalidConfigError(`${source} must be a JSON object (see RestoreConfig in the README).`);
  }
  const { config, problems } = checkConfig(raw);
  if (!config) {
    throw new InvalidConfigError(`${source} is not a valid restore config:\n  - ${problems.join('\n  - ')}`, {
      problems,
    });
  }
  const { $schema: _schema, ...rest } = config;
  return rest;
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

/** `config check`: whether a file is a valid config, and every problem with its JSON path when it is not. */
export function checkConfigFile(path: string): { file: string; ok: boolean; problems: string[]; message: string } {
  try {
    loadConfig(path);
    return { file: path, ok: true, problems: [], message: 'ok' };
  } catch (error) {
    if (!(error instanceof InvalidConfigError)) throw error;
    // Not JSON, not readable, not an object: one problem, the message.
    const problems = (error.details.problems as string[] | undefined) ?? [error.message];
    return { file: path, ok: false, problems, message: error.message };
  }
}
