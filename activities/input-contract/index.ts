/**
 * The input contract: one zod schema per workflow input, built from shared pieces (ids, tenant ids, `schema.table`,
 * database references, S3 locations, recovery targets), parsed by the command line before it starts anything and by
 * the worker at each workflow's first step, before any activity runs, and again by the activities that turn an input
 * into a path, a process argument or a connection. A workflow can be started by anyone with access to the namespace
 * (a client library, a schedule, a continued run), so the worker trusts nothing it did not check here.
 *
 * Workflow code imports this module: it must stay free of Node APIs (zod and plain functions only).
 */
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import {
  artifactsRef,
  bucketName,
  conflictPolicy,
  databaseName,
  databaseRef,
  objectRef,
  operationId,
  planRef,
  qualifiedName,
  recoveryTarget,
  scratchRisksAccepted,
  stanzaName,
  tenantId,
} from './atoms';
export * from './atoms';

/**
 * The config file travels in workflow inputs; its full schema (activities/config.ts) reads files and so cannot run in
 * workflow code: the workflow checks its outline here, and the plan step checks it whole (validateConfig) before
 * anything is written to live.
 */
const configOutline = z.record(z.string(), z.unknown());

export const restoreSource = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('backup'),
    backup: z.string().regex(/^s3:\/\/[^/\p{Cc}]+\/[^\p{Cc}]+$/u, 's3://<bucket>/<key> of a pg_dump archive'),
    scratchServer: databaseRef.optional(),
  }),
  z.strictObject({ kind: z.literal('scratch'), scratch: databaseRef }),
  z.strictObject({
    kind: z.literal('point-in-time'),
    stanza: stanzaName,
    target: recoveryTarget,
    /**
     * The incident window (issue 26): `target` is T0, the moment just before the incident, and `until` T1, the moment
     * just after it. A second scratch is recovered at T1; the restore reverts exactly what changed between the two.
     */
    until: recoveryTarget.optional(),
    database: databaseName.optional(),
  }),
]);

/** A window's conflicts: refuse the tenants that have any (default), or restore them except their conflicting rows. */
export const windowConflictModes = ['refuse', 'report'] as const;
export type WindowConflictMode = (typeof windowConflictModes)[number];

const concurrency = z.number().int().min(1).max(1000);
const count = (max: number) => z.number().int().min(1).max(max);

export const bulkRestoreInput = z
  .strictObject({
    restoreId: operationId('a restore id'),
    source: restoreSource,
    live: databaseRef,
    tenantRoot: qualifiedName,
    tenants: z.array(tenantId).min(1).max(100_000).optional(),
    tenantsObject: objectRef.optional(),
    conflict: conflictPolicy,
    concurrency,
    config: configOutline.optional(),
    keepScratch: z.boolean().optional(),
    allowPartial: z.boolean().optional(),
    artifacts: artifactsRef,
    maxChildrenPerRun: count(10_000).optional(),
    groupSize: count(10_000).optional(),
    unitRows: count(100_000_000).optional(),
    windowConflicts: z.enum(windowConflictModes).optional(),
    allowUnverifiedBackup: z.boolean().optional(),
    unsafeScratch: scratchRisksAccepted.optional(),
  })
  .refine((input) => !(input.tenants && input.tenantsObject), {
    message: 'give the tenants inline or as an S3 object, not both',
    path: ['tenantsObject'],
  });

export const discoverInput = z.strictObject({
  discoverId: operationId('a discover id'),
  source: restoreSource,
  live: databaseRef,
  tenantRoot: qualifiedName,
  config: configOutline.optional(),
  artifacts: artifactsRef,
  keepScratch: z.boolean().optional(),
  allowUnverifiedBackup: z.boolean().optional(),
  unsafeScratch: scratchRisksAccepted.optional(),
});

const unitCommon = {
  restoreId: operationId('a restore id'),
  scratch: databaseRef,
  live: databaseRef,
  plan: planRef,
  conflict: conflictPolicy,
  chunkRows: count(1_000_000_000).optional(),
  actions: z.array(z.record(z.string(), z.unknown())),
  artifacts: artifactsRef,
  allowPartial: z.boolean().optional(),
};

export const restoreUnitInput = z.strictObject({
  ...unitCommon,
  tenantIds: z.array(tenantId).min(1).max(10_000),
  scratchTaskQueue: z
    .string()
    .regex(/^[A-Za-z0-9_.:@-]{1,200}$/, 'a task queue name')
    .optional(),
  approvedTenants: z.array(tenantId),
  window: z
    .strictObject({
      touched: z.array(tenantId).max(10_000),
      conflicted: z.array(tenantId).max(10_000),
      refuseConflicts: z.boolean(),
    })
    .optional(),
});

/** A drill id becomes the restore id `drill-<id>`, so it is shorter than a restore id by that prefix. */
export const drillIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,56}$/;
export const drillInput = z.strictObject({
  backupPrefix: z.string().regex(/^s3:\/\/[^/\p{Cc}]+(\/[^\p{Cc}]*)?$/u, 's3://<bucket>/<prefix>'),
  live: databaseRef,
  tenantRoot: qualifiedName,
  sample: count(100_000),
  server: databaseRef.optional(),
  concurrency: concurrency.optional(),
  groupSize: count(10_000).optional(),
  config: configOutline.optional(),
  bucket: bucketName.optional(),
  drillId: z
    .string()
    .regex(drillIdPattern, "a drill id: letters, digits, '.', '_' and '-', at most 57 characters")
    .optional(),
  allowUnverifiedBackup: z.boolean().optional(),
  unsafeScratch: scratchRisksAccepted.optional(),
});

// ---------------------------------------------------------------------------------------------------------------
// reading a schema's verdict

/** Every problem of a parse, each with the field it concerns: `source.target.time: an RFC 3339 time ...`. */
export function inputProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const field = issue.path.map(String).join('.') || '(the input)';
    return `${field}: ${issue.message}`;
  });
}

/** The first field a parse refused, for the error's details (`source.target.time`). */
export function refusedFields(error: z.ZodError): string[] {
  return [...new Set(error.issues.map((issue) => issue.path.map(String).join('.') || '(the input)'))];
}

/**
 * The worker's refusal of an input (a workflow's or an activity's): non-retryable, of type InvalidInput, with the
 * refused fields in its details.
 */
export function invalidInput(message: string, fields: string[]): ApplicationFailure {
  return ApplicationFailure.create({ type: 'InvalidInput', nonRetryable: true, message, details: [{ fields }] });
}

/**
 * What a scratch is for: a restore's, a discover's or a drill's. A restore and a discover may carry one id (operators
 * reuse the incident id): the kind is part of a scratch's name, marker and directory, so one never touches the other's.
 */
/**
 * Whose scratch: a restore's, a discover's, a drill's; `window-end` is the second scratch of an incident window (the
 * moment after it, T1, beside the restore's or discover's own at T0); `when` is the scratch `when` reads positions in.
 */
export const scratchKinds = ['restore', 'discover', 'drill', 'window-end', 'when'] as const;
export type ScratchKind = (typeof scratchKinds)[number];
export const scratchKind = z.enum(scratchKinds);

/**
 * Parses `value` with `schema`; returns it, or throws what `refuse` makes of the problems (a UsageError on the command
 * line, a non-retryable ApplicationFailure in the worker).
 */
export function checkInput<T>(
  schema: z.ZodType<T>,
  value: unknown,
  refuse: (problems: string[], fields: string[]) => Error,
): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw refuse(inputProblems(parsed.error), refusedFields(parsed.error));
}
