/**
 * PostgreSQL errors and tools' stderr reduced to what carries no row data and no secret: SQLSTATE, condition name,
 * table, column and constraint names.
 */
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
export const conditions: Record<string, string> = {
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

export const classes: Record<string, string> = {
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
export const classesWithSafeMessages = new Set([
  '08',
  '0A',
  '25',
  '28',
  '3D',
  '3F',
  '40',
  '42',
  '53',
  '54',
  '55',
  '57',
]);

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

export const identifier = (value: unknown): string | undefined =>
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

export function maskQuotedValues(line: string): string {
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
