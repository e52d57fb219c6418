/**
 * `tenant-restore when`: `buildWhenRequest` checks the flags before anything starts (exit 2), with the grammar of
 * `start --at` for --since; `runWhen` checks --since against the archive (when this machine can ask pgBackRest),
 * starts the workflow `when/<id>` and waits for its result.
 */
import type { Client } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { idPattern } from '../../activities/input-contract';
import type { RecoveryTarget } from '../../activities/restore-types';
import { whenInput, whenWorkflowId, type WhenInput, type WhenResult } from '../../activities/when-contract';
import { noWorkerWarning, workflowPollers } from './connection';
import { UsageError } from './errors';
import { checkDatabaseRef, checkStartInput, checkTenantRoot, taskQueueFrom, tenantsFromFlags } from './input';
import { restoreFailureMessage } from './restore';
import { momentFromFlag } from './source';
import { checkPointInTime } from './source-reachable';

export interface WhenFlags {
  backup?: string;
  live?: string;
  'tenant-root'?: string;
  tenants?: string;
  'tenants-file'?: string;
  since?: string;
  id?: string;
  'task-queue'?: string;
}

export function newWhenId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `w-${stamp}-${randomBytes(2).toString('hex')}`;
}

/** --since in the grammar of `start --at`, refused the same way when it has no zone or is in the future. */
export function sinceFromFlag(text: string, now = new Date()): RecoveryTarget {
  return momentFromFlag('since', text, now, 'give a moment before the deletions');
}

export function buildWhenRequest(
  flags: WhenFlags,
  env: NodeJS.ProcessEnv = process.env,
  now = new Date(),
): { input: WhenInput; taskQueue: string } {
  if (!flags.backup) throw new UsageError('missing --backup pgbackrest:<stanza>[/<database>] (the WAL archive).');
  const match = /^pgbackrest:([A-Za-z0-9_.-]+)(?:\/([A-Za-z0-9_$-]+))?$/.exec(flags.backup);
  if (!match)
    throw new UsageError(
      `--backup '${flags.backup}': when reads a WAL archive, named pgbackrest:<stanza> or pgbackrest:<stanza>/<database> (default database: live's).`,
    );
  if (!flags.live) throw new UsageError('missing --live <url|alias> (its database name is the default database).');
  if (!flags['tenant-root']) throw new UsageError('missing --tenant-root <schema.table>.');
  const id = flags.id ?? newWhenId(now);
  if (!idPattern.test(id))
    throw new UsageError(`--id '${id}': letters, digits, '.', '_' and '-', at most 63 characters.`);
  const input: WhenInput = {
    whenId: id,
    stanza: match[1]!,
    ...(match[2] ? { database: match[2] } : {}),
    live: checkDatabaseRef('live', flags.live),
    tenantRoot: checkTenantRoot(flags['tenant-root']),
    tenants: tenantsFromFlags(flags, true),
    ...(flags.since !== undefined ? { since: sinceFromFlag(flags.since, now) } : {}),
  };
  checkStartInput('when', whenInput, input);
  return { input, taskQueue: taskQueueFrom(flags['task-queue'], env) };
}

/** The when workflow failed (a tenant gone before --since, --since outside the archive...): its message says why; exit 2. */
export class WhenFailedError extends UsageError {
  override name = 'WhenFailedError';
}

/** Starts `when/<id>` after checking --since against the archive, and waits for its result. */
export async function runWhen(
  client: Client,
  request: ReturnType<typeof buildWhenRequest>,
  onNoWorker: (message: string) => void,
): Promise<WhenResult> {
  const { input, taskQueue } = request;
  if (input.since) await checkPointInTime({ stanza: input.stanza, target: input.since }, 'since');
  const handle = await client.workflow
    .start<(i: WhenInput) => Promise<WhenResult>>('whenDeleted', {
      workflowId: whenWorkflowId(input.whenId),
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      taskQueue,
      args: [input],
    })
    .catch((error: unknown) => {
      if (error instanceof WorkflowExecutionAlreadyStartedError)
        throw new UsageError(`when ${input.whenId} already exists: choose another --id.`);
      throw error;
    });
  if ((await workflowPollers(client, taskQueue).catch(() => 1)) === 0) onNoWorker(noWorkerWarning(taskQueue));
  try {
    return await handle.result();
  } catch (error) {
    throw new WhenFailedError(restoreFailureMessage(error));
  }
}
