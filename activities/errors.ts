/**
 * Named errors of the restore engine. Each one means "retrying will not help": the input, the schema or the data must
 * change first, so the orchestration lists `nonRetryableErrorTypes` in its retry policies. Each message says what an
 * operator should do next. Messages carry table names, constraint names, tenant ids and counts, never row data.
 */

export abstract class RestoreError extends Error {
  /** Stable type string; equals the class name, and is what Temporal's `ApplicationFailure.type` carries. */
  abstract override readonly name: string;
  constructor(message: string, readonly details: Record<string, unknown> = {}) {
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

/** Type strings of every error above: retrying will not change their outcome. */
export const nonRetryableErrorTypes: string[] = [
  'SchemaDriftError',
  'CrossTenantConflictError',
  'TenantNotInBackupError',
  'UnbreakableCycleError',
  'MissingPrimaryKeyError',
  'InvalidTenantRootError',
  'ConflictPolicyError',
  'DanglingReferenceError',
  'InvalidConfigError',
  'PlanMismatchError',
  'InvalidCheckpointError',
];

export function isRestoreError(error: unknown): error is RestoreError {
  return error instanceof RestoreError;
}
