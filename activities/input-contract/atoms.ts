/**
 * The input contract's pieces, defined once: ids, tenant ids and lists, schema.table, database references without a
 * password, S3 locations, pgBackRest names, recovery targets. Workflow code imports this module: it must stay free of
 * Node APIs.
 */
import { z } from 'zod';
import { canonicalUuid, type RecoveryTarget } from '../restore-types';

// ---------------------------------------------------------------------------------------------------------------
// pieces

/**
 * A restore, discover or drill id. It names workflow ids, S3 prefixes and (through a digest) directories and
 * databases: letters, digits, '.', '_' and '-', starting with a letter or digit; never `..` or a slash.
 */
export const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const operationId = (what: string) =>
  z.string().regex(idPattern, `${what}: letters, digits, '.', '_' and '-', at most 63 characters`);

/** A tenant id as text: the engine casts it to the root key's type in SQL. */
export const tenantIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;
export const tenantId = z
  .string()
  .regex(tenantIdPattern, "a tenant id: letters, digits, '_', '.', ':' and '-', at most 128 characters");

/**
 * The key under which two list entries are the same tenant: ids shaped like a uuid are compared in canonical form
 * (the list is checked before the plan knows the root key's type; two uuid-shaped ids that differ only in case are
 * refused even for a text key: such a list is a mistake either way).
 */
export const sameTenantKey = (id: string): string => canonicalUuid(id) ?? id;

/**
 * The one rule for a tenant list, wherever it comes from (flags, a file, discover's list, an S3 object a workflow
 * reads): not empty, every entry a tenant id, no tenant twice. `where` names an entry in messages (`line 3`).
 * Returns the problems (none when the list is good) and the ids in order.
 */
export function tenantListProblems(entries: Array<{ id: unknown; where: string }>): {
  problems: string[];
  ids: string[];
} {
  const problems: string[] = [];
  if (entries.length === 0) problems.push('the tenant list is empty');
  const first = new Map<string, { id: string; where: string }>();
  for (const { id: raw, where } of entries) {
    const id = typeof raw === 'number' && Number.isSafeInteger(raw) ? String(raw) : raw;
    if (typeof id !== 'string' || !tenantIdPattern.test(id))
      problems.push(
        `${where} (${JSON.stringify(typeof raw === 'string' ? raw.slice(0, 40) : raw)}) is not a tenant id`,
      );
    else if (first.has(sameTenantKey(id))) {
      const earlier = first.get(sameTenantKey(id))!;
      problems.push(
        `${where}: tenant ${id} is already listed at ${earlier.where}${earlier.id === id ? '' : ` as ${earlier.id} (uuids are compared without regard to case)`}`,
      );
    } else first.set(sameTenantKey(id), { id, where });
  }
  return { problems, ids: [...first.values()].map((entry) => entry.id) };
}

/**
 * `schema.table` as the catalog spells them, unquoted: any characters (capitals, spaces, quotes, non-ASCII) but a
 * dot or a control character. The engine quotes each part itself.
 */
export const qualifiedNamePattern = /^[^.\p{Cc}]+\.[^.\p{Cc}]+$/u;
export const qualifiedName = z.string().regex(qualifiedNamePattern, 'schema.table, for example public.tenants');

/** A database alias (`TENANT_RESTORE_DB_<ALIAS>` in the worker's environment), or `alias/database`. */
export const aliasRefPattern = /^[A-Za-z][A-Za-z0-9_]*(\/[A-Za-z0-9_]+)?$/;
export const isPostgresUrl = (ref: string) => /^postgres(ql)?:\/\//.test(ref);

/** Why a database reference is not one a workflow input may carry, or undefined. Never echoes a password. */
export function databaseRefProblem(ref: string): string | undefined {
  if (hasPassword(ref))
    return 'carries a password, which would be stored in workflow history: give it to the workers (PGPASSFILE or an alias)';
  if (aliasRefPattern.test(ref)) return undefined;
  if (!isPostgresUrl(ref))
    return 'is neither a postgres:// URL nor an alias (TENANT_RESTORE_DB_<ALIAS> in the worker environment)';
  let url: URL;
  try {
    url = new URL(ref);
  } catch {
    return 'is not a valid URL';
  }
  if (/\p{Cc}/u.test(ref)) return 'holds a control character';
  if (!url.hostname && !url.searchParams.get('host')) return 'has no host';
  if (!url.pathname.replace(/^\//, '')) return 'names no database (postgres://user@host:port/<database>)';
  return undefined;
}
export const databaseRef = z.string().superRefine((ref, ctx) => {
  const problem = databaseRefProblem(ref);
  if (problem) ctx.addIssue({ code: 'custom', message: `a database reference that ${problem}` });
});

/** An S3 bucket name (the rules S3 and MinIO share). */
export const bucketName = z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name');
/** An S3 key or prefix: no control characters, no `.` or `..` path segment (a prefix is joined into keys). */
const s3Key = (what: string, allowEmpty: boolean) =>
  z
    .string()
    .max(1024)
    .refine((key) => allowEmpty || key.length > 0, `${what} is empty`)
    .refine((key) => !/\p{Cc}/u.test(key), `${what} holds a control character`)
    .refine(
      (key) => !key.split('/').some((part) => part === '.' || part === '..'),
      `${what} has a '.' or '..' segment`,
    );
export const objectRef = z.strictObject({ bucket: bucketName, key: s3Key('the key', false) });
export const artifactsRef = z.strictObject({ bucket: bucketName, prefix: s3Key('the prefix', true) });
export const planRef = z.strictObject({
  bucket: bucketName,
  key: s3Key('the key', false),
  // Compared with the digest recomputed from the stored plan (assertPlan), never used as a name.
  digest: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "a digest: letters, digits, '_' and '-'"),
  tables: z.number().int().min(0),
  rootKeyType: z
    .string()
    .regex(/^[\p{L}\p{N} _."()[\],-]{1,128}$/u, 'a type name')
    .optional(),
});

/** A pgBackRest stanza, and a database name for `pgbackrest:<stanza>/<database>`. */
export const stanzaPattern = /^[A-Za-z0-9_.-]{1,64}$/;
export const stanzaName = z
  .string()
  .regex(stanzaPattern, "a pgBackRest stanza: letters, digits, '_', '.' and '-'")
  .refine((s) => s !== '.' && s !== '..', 'a stanza name, not . or ..');
export const databaseNamePattern = /^[A-Za-z0-9_$-]{1,63}$/;
export const databaseName = z.string().regex(databaseNamePattern, "a database name: letters, digits, '_', '$' and '-'");

export const conflictPolicy = z.enum(['skip', 'overwrite', 'fail']);
/** The risks of loading a backup an operator may accept (activities/scratch-server.ts), each by its own flag. */
export const scratchRisksAccepted = z.array(z.enum(['on-live-server', 'as-live-role', 'as-superuser'])).max(3);

// ---------------------------------------------------------------------------------------------------------------
// recovery targets: re-parsed and re-rendered, never passed through as text

const rfc3339 = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/i;
const lsnPattern = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i;

/**
 * A time to the microsecond, as PostgreSQL keeps it: a commit in the same millisecond as the target is before or after
 * it, and JavaScript's Date would round that away. Reads ISO 8601 / RFC 3339 and PostgreSQL's `2026-12-02 11:00:00.5+00`.
 * NaN when the text is not a time.
 */
export function toMicros(text: string): number {
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?\s*(Z|UTC|[+-]\d{2}(?::?\d{2})?)?$/i.exec(
    text.trim(),
  );
  if (!m) return Date.parse(text) * 1000;
  let zone = (m[4] ?? 'Z').toUpperCase();
  if (zone === 'UTC') zone = 'Z';
  else if (/^[+-]\d{2}$/.test(zone)) zone = `${zone}:00`;
  else if (/^[+-]\d{4}$/.test(zone)) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const whole = Date.parse(`${m[1]}T${m[2]!.length === 5 ? `${m[2]}:00` : m[2]}${zone}`);
  return whole * 1000 + Number((m[3] ?? '').padEnd(6, '0').slice(0, 6));
}

/** ISO 8601 in UTC, with microseconds when there are any. */
export function isoFromMicros(us: number): string {
  const iso = new Date(Math.floor(us / 1000)).toISOString();
  const micros = us % 1000;
  return micros === 0 ? iso : iso.replace(/Z$/, `${String(micros).padStart(3, '0')}Z`);
}

/**
 * `--at`: an RFC 3339 time with its zone (a time without one is ambiguous), or a WAL position (LSN, `0/3A000060`).
 * Undefined when it is neither. A time comes back in one canonical form (UTC, microseconds).
 */
export function parseRecoveryTarget(at: string): RecoveryTarget | undefined {
  if (lsnPattern.test(at)) return { type: 'lsn', lsn: at.toUpperCase() };
  if (!rfc3339.test(at)) return undefined;
  const us = toMicros(at);
  return Number.isFinite(us) ? { type: 'time', time: isoFromMicros(us) } : undefined;
}

/**
 * A recovery target from a workflow input: it must be exactly what `parseRecoveryTarget` renders, so that what
 * reaches pgBackRest (which writes it into the recovered server's configuration unescaped) is text this module made.
 */
export const recoveryTarget = z.union([
  z.strictObject({
    type: z.literal('time'),
    time: z.string().refine((time) => {
      const parsed = parseRecoveryTarget(time);
      return parsed?.type === 'time' && parsed.time === time;
    }, 'an RFC 3339 time in UTC as the command line renders it (2026-12-02T07:03:00.123456Z)'),
  }),
  z.strictObject({
    type: z.literal('lsn'),
    lsn: z.string().refine((lsn) => {
      const parsed = parseRecoveryTarget(lsn);
      return parsed?.type === 'lsn' && parsed.lsn === lsn;
    }, 'a WAL position in upper case (0/3A000060)'),
  }),
]);

// ---------------------------------------------------------------------------------------------------------------
// passwords (DESIGN I5): no reference that carries one may enter a workflow input

/** Query parameter names that hold a secret. libpq's are case-sensitive (`password`, `sslpassword`); any spelling is refused. */
const secretParam = (name: string): boolean => name.toLowerCase() !== 'passfile' && /pass|secret|token/i.test(name);

export const decode = (text: string): string => {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
};

/**
 * True when a reference carries a password anywhere libpq or node-postgres could read one, so it must never be put
 * into a workflow input: the user part (`postgres://user:pw@`, or a user name with a `:` in it), a query parameter
 * (`?password=`, `?sslpassword=`, any spelling), a `user=` parameter with a `:`, a parameter value or a database
 * name that is itself a connection string with a password, a keyword/value string (`host=db password=x`), and a
 * URL that does not parse but has `user:secret@` before its host.
 */
export function hasPassword(ref: string): boolean {
  const text = ref.trim();
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) return /password\s*=/i.test(text);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return /^[^:]+:\/\/[^@]*:[^@]*@/.test(text) || /password/i.test(decode(text));
  }
  if (url.password !== '') return true;
  if (decode(url.username).includes(':')) return true;
  for (const [name, value] of url.searchParams) {
    if (secretParam(name)) return true;
    if (name === 'user' && value.includes(':')) return true;
    if (/password/i.test(value) || (value.includes('://') && hasPassword(value))) return true;
  }
  if (/password/i.test(decode(url.hash))) return true;
  const database = decode(url.pathname.replace(/^\//, ''));
  return /password\s*=/i.test(database) || (database.includes('://') && hasPassword(database));
}

// ---------------------------------------------------------------------------------------------------------------
