/**
 * Named errors of the restore engine. Each one means "retrying will not help": the input, the schema or the data must
 * change first, so the orchestration lists `nonRetryableErrorTypes` in its retry policies. Each message says what an
 * operator should do next. Messages carry table names, constraint names, tenant ids and counts, never row data.
 */

export abstract class RestoreError extends Error {
  /** Stable type string; equals the class name, and is what Temporal's `ApplicationFailure.type` carries. */
  abstract override readonly name: string;
  constructor(
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Backup and live schemas differ in a way the restore cannot bridge (a type without a cast, a NOT NULL column without default). */
export class SchemaDriftError extends RestoreError {
  override readonly name = 'SchemaDriftError';
}

/** A key the tenant would write already exists in live and belongs to another tenant. Nothing was committed. */
export class CrossTenantConflictError extends RestoreError {
  override readonly name = 'CrossTenantConflictError';
}

/**
 * A tenant of the list is still in live: `present` (nothing of the backup is missing: it was never deleted) or `partial`
 * (root row there, some rows missing) without the operator's `allowPartial`. Restoring it would revert its users' work,
 * so nothing of it is written.
 */
export class TenantPresentError extends RestoreError {
  override readonly name = 'TenantPresentError';
}

/** The tenant's root row is not in the backup (scratch). */
export class TenantNotInBackupError extends RestoreError {
  override readonly name = 'TenantNotInBackupError';
}

/** An FK cycle with no deferrable constraint and no nullable FK, and no way to suspend FK checks in the transaction. */
export class UnbreakableCycleError extends RestoreError {
  override readonly name = 'UnbreakableCycleError';
}

/** A table the restore must write has no primary key, so rows cannot be matched, merged or resumed idempotently. */
export class MissingPrimaryKeyError extends RestoreError {
  override readonly name = 'MissingPrimaryKeyError';
}

/** `--tenant-root` does not name a table with a single-column primary key in both databases. */
export class InvalidTenantRootError extends RestoreError {
  override readonly name = 'InvalidTenantRootError';
}

/** Policy `fail` met a key of the same tenant that already exists in live. Nothing was committed. */
export class ConflictPolicyError extends RestoreError {
  override readonly name = 'ConflictPolicyError';
}

/** Restored rows reference parent rows that exist neither in live nor among the rows the restore may write. Nothing was committed. */
export class DanglingReferenceError extends RestoreError {
  override readonly name = 'DanglingReferenceError';
}

/** A table the restore writes has a DEFERRABLE primary key or unique constraint in live, which ON CONFLICT cannot use. */
export class DeferrableUniqueKeyError extends RestoreError {
  override readonly name = 'DeferrableUniqueKeyError';
}

/**
 * A table the restore writes has an EXCLUDE constraint in live: the restore checks unique keys against other tenants'
 * rows before it writes, but not exclusions, so it refuses them at plan time.
 */
export class ExclusionConstraintError extends RestoreError {
  override readonly name = 'ExclusionConstraintError';
}

/** Restored rows would reference a table the restore does not write (excluded, or only in live) whose tenant rows are gone. */
export class ExcludedParentError extends RestoreError {
  override readonly name = 'ExcludedParentError';
}

/** The config file is not valid JSON or does not match RestoreConfig. */
export class InvalidConfigError extends RestoreError {
  override readonly name = 'InvalidConfigError';
}

/** The plan given to an operation was built for other databases or has been altered (digest mismatch). */
export class PlanMismatchError extends RestoreError {
  override readonly name = 'PlanMismatchError';
}

/** A resume checkpoint does not fit the plan (table index out of range, wrong key width). */
export class InvalidCheckpointError extends RestoreError {
  override readonly name = 'InvalidCheckpointError';
}

/** Scratch (the backup) and live store text in different server encodings: rows would not arrive as they were. */
export class EncodingMismatchError extends RestoreError {
  override readonly name = 'EncodingMismatchError';
}

/** Type strings of every error above: retrying will not change their outcome. */
export const nonRetryableErrorTypes: string[] = [
  'EncodingMismatchError',
  'SchemaDriftError',
  'CrossTenantConflictError',
  'TenantNotInBackupError',
  'TenantPresentError',
  'UnbreakableCycleError',
  'MissingPrimaryKeyError',
  'InvalidTenantRootError',
  'ConflictPolicyError',
  'DanglingReferenceError',
  'DeferrableUniqueKeyError',
  'ExclusionConstraintError',
  'ExcludedParentError',
  'InvalidConfigError',
  'PlanMismatchError',
  'InvalidCheckpointError',
  'DatabaseRefError',
  'LiveReadOnlyError',
  'InsufficientPrivilegeError',
  'ConstraintViolationError',
  'DataError',
  'UndefinedObjectError',
  'StatementTimeoutError',
  'UnexpectedDatabaseError',
];

export function isRestoreError(error: unknown): error is RestoreError {
  return error instanceof RestoreError;
}

// ---------------------------------------------------------------------------------------------------------------
// PostgreSQL errors: reduced to what carries no row data, and classified once (transient or named, non-retryable)

/** The parts of a PostgreSQL error that carry no row data and no secret. */
export interface ReducedDbError {
  sqlState: string;
  /** The condition name of the SQLSTATE (`unique_violation`), or its class's name when the code is not listed. */
  condition: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
  /** The server's message when its class never carries values (privileges, locks, objects), else a fixed description. */
  description: string;
  /** One line: description, SQLSTATE, condition and the objects named. */
  message: string;
}

/** Condition names (PostgreSQL's Appendix A) of the codes a restore may meet; others are named by their class. */
const conditions: Record<string, string> = {
  '08000': 'connection_exception',
  '08001': 'sqlclient_unable_to_establish_sqlconnection',
  '08003': 'connection_does_not_exist',
  '08004': 'sqlserver_rejected_establishment_of_sqlconnection',
  '08006': 'connection_failure',
  '08P01': 'protocol_violation',
  '0A000': 'feature_not_supported',
  '21000': 'cardinality_violation',
  '22000': 'data_exception',
  '22001': 'string_data_right_truncation',
  '22003': 'numeric_value_out_of_range',
  '22004': 'null_value_not_allowed',
  '22007': 'invalid_datetime_format',
  '22008': 'datetime_field_overflow',
  '22012': 'division_by_zero',
  '22021': 'character_not_in_repertoire',
  '22023': 'invalid_parameter_value',
  '22026': 'string_data_length_mismatch',
  '22P02': 'invalid_text_representation',
  '22P03': 'invalid_binary_representation',
  '22P04': 'bad_copy_file_format',
  '22P05': 'untranslatable_character',
  '2200T': 'invalid_xml_processing_instruction',
  '22030': 'duplicate_json_object_key_value',
  '22032': 'invalid_json_text',
  '23000': 'integrity_constraint_violation',
  '23001': 'restrict_violation',
  '23502': 'not_null_violation',
  '23503': 'foreign_key_violation',
  '23505': 'unique_violation',
  '23514': 'check_violation',
  '23P01': 'exclusion_violation',
  '25000': 'invalid_transaction_state',
  '25001': 'active_sql_transaction',
  '25006': 'read_only_sql_transaction',
  '25P02': 'in_failed_sql_transaction',
  '28000': 'invalid_authorization_specification',
  '28P01': 'invalid_password',
  '3D000': 'invalid_catalog_name',
  '3F000': 'invalid_schema_name',
  '40001': 'serialization_failure',
  '40002': 'transaction_integrity_constraint_violation',
  '40P01': 'deadlock_detected',
  '42501': 'insufficient_privilege',
  '42601': 'syntax_error',
  '42602': 'invalid_name',
  '42702': 'ambiguous_column',
  '42703': 'undefined_column',
  '42704': 'undefined_object',
  '42710': 'duplicate_object',
  '42804': 'datatype_mismatch',
  '42809': 'wrong_object_type',
  '42846': 'cannot_coerce',
  '42883': 'undefined_function',
  '42P01': 'undefined_table',
  '42P07': 'duplicate_table',
  '42P10': 'invalid_column_reference',
  '53000': 'insufficient_resources',
  '53100': 'disk_full',
  '53200': 'out_of_memory',
  '53300': 'too_many_connections',
  '54000': 'program_limit_exceeded',
  '55000': 'object_not_in_prerequisite_state',
  '55006': 'object_in_use',
  '55P03': 'lock_not_available',
  '57014': 'query_canceled',
  '57P01': 'admin_shutdown',
  '57P02': 'crash_shutdown',
  '57P03': 'cannot_connect_now',
  '57P04': 'database_dropped',
  '58000': 'system_error',
  '58030': 'io_error',
  P0001: 'raise_exception',
  P0002: 'no_data_found',
  P0003: 'too_many_rows',
  P0004: 'assert_failure',
  XX000: 'internal_error',
  XX001: 'data_corrupted',
  XX002: 'index_corrupted',
};

const classes: Record<string, string> = {
  '08': 'connection_exception',
  '0A': 'feature_not_supported',
  '22': 'data_exception',
  '23': 'integrity_constraint_violation',
  '25': 'invalid_transaction_state',
  '28': 'invalid_authorization_specification',
  '40': 'transaction_rollback',
  '42': 'syntax_error_or_access_rule_violation',
  '53': 'insufficient_resources',
  '54': 'program_limit_exceeded',
  '55': 'object_not_in_prerequisite_state',
  '57': 'operator_intervention',
  '58': 'system_error',
  P0: 'plpgsql_error',
  XX: 'internal_error',
};

/**
 * Classes whose server messages name objects (tables, roles, locks) but never a value of a row: their message is
 * kept. Every other class (data exceptions, constraint violations, RAISE in a trigger, internal errors) gets a fixed
 * description, because the server puts row values into their messages (`invalid input syntax for type integer:
 * "<value>"`).
 */
const classesWithSafeMessages = new Set(['08', '0A', '25', '28', '3D', '3F', '40', '42', '53', '54', '55', '57']);

export interface PgErrorLike {
  code: string;
  message?: string;
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
  severity?: string;
  routine?: string;
}

/** A PostgreSQL server error (node-postgres' DatabaseError): a five-character SQLSTATE and the server's fields. */
export function isPgError(error: unknown): error is PgErrorLike {
  const e = error as Partial<PgErrorLike> | null;
  return Boolean(
    e &&
    typeof e === 'object' &&
    typeof e.code === 'string' &&
    /^[0-9A-Z]{5}$/.test(e.code) &&
    (e.severity !== undefined || e.routine !== undefined),
  );
}

const identifier = (value: unknown): string | undefined =>
  typeof value === 'string' && value.length > 0 && value.length <= 128 && !/[\n\r]/.test(value) ? value : undefined;

/**
 * The one place database errors are reduced before they are thrown on, logged, put into a Temporal failure or a
 * report: SQLSTATE, condition name, schema, table, column, constraint and a fixed safe description. `detail` (a key's
 * values, a failing row), `where` (COPY line context with the line's data), `hint`, `internalQuery` and the raw
 * message of data errors are dropped.
 */
export function reduceDbError(error: PgErrorLike): ReducedDbError {
  const sqlState = error.code;
  const klass = sqlState.slice(0, 2);
  const condition = conditions[sqlState] ?? classes[klass] ?? 'unknown';
  const serverMessage = typeof error.message === 'string' ? error.message.split('\n')[0]!.slice(0, 300) : '';
  const description =
    classesWithSafeMessages.has(klass) && serverMessage ? serverMessage : condition.replace(/_/g, ' ');
  const reduced: ReducedDbError = { sqlState, condition, description, message: '' };
  for (const key of ['schema', 'table', 'column', 'constraint'] as const) {
    const value = identifier(error[key]);
    if (value) reduced[key] = value;
  }
  const table = reduced.table ? (reduced.schema ? `${reduced.schema}.${reduced.table}` : reduced.table) : undefined;
  const objects = [
    table && `table ${table}`,
    reduced.column && `column ${reduced.column}`,
    reduced.constraint && `constraint ${reduced.constraint}`,
  ].filter(Boolean);
  reduced.message = `${description} (SQLSTATE ${sqlState} ${condition}${objects.length ? `; ${objects.join(', ')}` : ''})`;
  return reduced;
}

/**
 * pg_restore's (or psql's) stderr, reduced the same way: error lines are kept, the lines that carry data are not
 * (`CONTEXT:  COPY t, line 3, column x: "<value>"`, `DETAIL:  Key (id)=(42) ...`, `Command was: INSERT ... VALUES`),
 * and a value quoted at the end of an error line (`invalid input syntax for type integer: "<value>"`) is masked.
 */
export function reduceToolStderr(stderr: string): string {
  const out: string[] = [];
  let skippingContinuation = false;
  for (const raw of stderr.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (/^\s*(CONTEXT|DETAIL|HINT|QUERY|WHERE|LINE \d+|STATEMENT):/.test(line) || /^\s*Command was:/.test(line)) {
      skippingContinuation = true;
      continue;
    }
    // Continuation lines of a dropped block (indented, or the caret line under LINE n) go with it.
    if (skippingContinuation && (/^\s/.test(line) || line === '')) continue;
    skippingContinuation = false;
    out.push(maskQuotedValues(line));
  }
  return out.join('\n').trim();
}

function maskQuotedValues(line: string): string {
  return (
    line
      // `...: "<value>"` at the end of a line (invalid input syntax, invalid input value for enum, ...)
      .replace(/(:\s*)"(?:[^"]|"")*"?\s*$/, '$1"…"')
      // `value "<value>" is out of range`, `value "<value>" too long`
      .replace(/\bvalue "(?:[^"]|"")*"/g, 'value "…"')
      // `Key (id)=(42)` that made it onto an error line
      .replace(/\)=\((?:[^()]|\([^()]*\))*\)/g, ')=(…)')
  );
}

/** live is a standby, or read-only (`default_transaction_read_only`): nothing can be written there. */
export class LiveReadOnlyError extends RestoreError {
  override readonly name = 'LiveReadOnlyError';
}

/** The restore's role lacks a privilege on live (or scratch). */
export class InsufficientPrivilegeError extends RestoreError {
  override readonly name = 'InsufficientPrivilegeError';
}

/** Live refused a restored row for a constraint the engine's own checks did not cover (a CHECK, an exclusion, ...). */
export class ConstraintViolationError extends RestoreError {
  override readonly name = 'ConstraintViolationError';
}

/** A value of the backup does not fit live's column (class 22: invalid text, out of range, too long). */
export class DataError extends RestoreError {
  override readonly name = 'DataError';
}

/** A table, column or object of the plan is gone: the schema changed under the restore. */
export class UndefinedObjectError extends RestoreError {
  override readonly name = 'UndefinedObjectError';
}

/** A statement ran longer than TENANT_RESTORE_STATEMENT_TIMEOUT (or was cancelled by an operator). */
export class StatementTimeoutError extends RestoreError {
  override readonly name = 'StatementTimeoutError';
}

/** Any other database error: retrying the same statement will meet it again. */
export class UnexpectedDatabaseError extends RestoreError {
  override readonly name = 'UnexpectedDatabaseError';
}

/** SQLSTATEs worth a retry: serialization failure, deadlock, lock timeout, connection loss, shutdown and restart. */
export function isTransientSqlState(sqlState: string): boolean {
  // 08P01 (protocol violation) is a bug on one side, not a network failure: it would fail the same way again.
  return (
    (sqlState.startsWith('08') && sqlState !== '08P01') ||
    ['40001', '40P01', '55P03', '57P01', '57P02', '57P03', '53300'].includes(sqlState)
  );
}

/**
 * Turns a PostgreSQL error into what the activity throws: `undefined` when it is transient (the caller retries it,
 * reduced), otherwise a named, non-retryable error whose message says what to do. Its `details` are the reduced
 * fields only.
 */
export function classifyDbError(error: PgErrorLike): RestoreError | undefined {
  const r = reduceDbError(error);
  if (isTransientSqlState(r.sqlState)) return undefined;
  const details = {
    sqlState: r.sqlState,
    condition: r.condition,
    schema: r.schema,
    table: r.table,
    column: r.column,
    constraint: r.constraint,
  };
  const klass = r.sqlState.slice(0, 2);
  const on = r.table ? ` on ${r.schema ? `${r.schema}.` : ''}${r.table}` : '';
  if (r.sqlState === '25006') {
    return new LiveReadOnlyError(
      `The database is read-only: ${r.message}. It is a standby, or default_transaction_read_only is on. Point --live at the primary (or turn read-only off) and start the restore again; retrying here cannot help.`,
      details,
    );
  }
  if (r.sqlState === '42501') {
    return new InsufficientPrivilegeError(
      `The restore's role lacks a privilege: ${r.message}. Grant it as scripts/grants.sql does (README: Grants), then retry the restore.`,
      details,
    );
  }
  if (klass === '23') {
    return new ConstraintViolationError(
      `Live refused a restored row${on}: ${r.message}. ${r.sqlState === '23505' || r.sqlState === '23P01' ? 'Another session wrote the same key while the restore ran (another tenant writing at that moment), or live has a unique constraint the backup rows do not satisfy. Nothing was committed by the failing transaction. Look up the key in live, then restore the tenant again.' : `Live has a rule the backup's rows do not satisfy (a constraint added after the backup?). Fix or relax ${r.constraint ? `constraint ${r.constraint}` : 'the constraint'}, or exclude the table, then restore the tenant again.`}`,
      details,
    );
  }
  if (klass === '22') {
    return new DataError(
      `A value of the backup does not fit live${on}: ${r.message}. Live's column type or domain is narrower than the backup's; widen it or exclude the column, then restore the tenant again.`,
      details,
    );
  }
  if (['42P01', '42703', '42704', '3F000', '42883'].includes(r.sqlState)) {
    return new UndefinedObjectError(
      `The schema changed under the restore: ${r.message}. Plan again (start a new restore, or run \`tenant-restore plan\`) against live as it is now.`,
      details,
    );
  }
  if (r.sqlState === '57014') {
    return new StatementTimeoutError(
      `A statement was cancelled: ${r.message}. If it hit TENANT_RESTORE_STATEMENT_TIMEOUT, raise it in the workers' environment (or restore the tenant in chunks), then restore the tenant again.`,
      details,
    );
  }
  return new UnexpectedDatabaseError(
    `The database refused a statement: ${r.message}. Retrying the same statement will not help; see the SQLSTATE.`,
    details,
  );
}

/**
 * Scratch was emptied after it was loaded: its tables are UNLOGGED (activities/scratch.ts), and its server went through
 * crash recovery (a crash, a kill, an immediate shutdown), which empties every unlogged relation. Its sentinel
 * (activities/scratch-alive.ts) says so, so that a reset scratch is never read as a backup without these tenants.
 * Not in `nonRetryableErrorTypes`: retrying the same step cannot help, but the restore can, once scratch is loaded
 * again (prepareScratch rebuilds a scratch whose sentinel was reset) and the step runs again on it.
 */
export class ScratchResetError extends RestoreError {
  override readonly name = 'ScratchResetError';
}
