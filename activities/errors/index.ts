/**
 * Named errors of the restore engine. Each one means "retrying will not help": the input, the schema or the data must
 * change first, so the orchestration lists `nonRetryableErrorTypes` in its retry policies. Each message says what an
 * operator should do next. Messages carry table names, constraint names, tenant ids and counts, never row data.
 */
import { PgErrorLike, reduceDbError } from './database';

export * from './database';
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
 * Scratch was emptied after it was loaded: its tables are UNLOGGED (activities/scratch/dump.ts), and its server went through
 * crash recovery (a crash, a kill, an immediate shutdown), which empties every unlogged relation. Its sentinel
 * (activities/scratch-alive.ts) says so, so that a reset scratch is never read as a backup without these tenants.
 * Not in `nonRetryableErrorTypes`: retrying the same step cannot help, but the restore can, once scratch is loaded
 * again (prepareScratch rebuilds a scratch whose sentinel was reset) and the step runs again on it.
 */
export class ScratchResetError extends RestoreError {
  override readonly name = 'ScratchResetError';
}
