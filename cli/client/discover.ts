/**
 * Starting a discover and reading its result: `buildDiscoverRequest` checks the flags before anything starts (exit 2),
 * with the same checks as `start` for the source, live, tenant root, config and artifacts; `runDiscover` starts the
 * workflow `discover/<id>` and waits for its summary; `discoverList` reads the list to restore that a finished discover
 * wrote to S3 (for `start --from-discover`).
 */
import type { Client } from '@temporalio/client';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import type { DiscoverSummary } from '../../activities/discover';
import { createS3Client, getText, parseS3Url } from '../../activities/s3';
import {
  discoverWorkflowId,
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  type DiscoverInput,
} from '../../workflows/definitions';
import { isNotFound, noWorkerWarning, s3Unavailable, workflowPollers } from './connection';
import { RestoreNotFoundError, UsageError } from './errors';
import { restoreFailureMessage } from './restore';
import { checkSourceReachable, sourceFromFlags, type SourceFlags } from './start';
import { taskQueueFrom } from './input';

export interface DiscoverFlags extends SourceFlags {
  'keep-scratch'?: boolean;
  'task-queue'?: string;
}

export function newDiscoverId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `d-${stamp}-${randomBytes(2).toString('hex')}`;
}

export function buildDiscoverRequest(
  flags: DiscoverFlags,
  env: NodeJS.ProcessEnv = process.env,
): { input: DiscoverInput; taskQueue: string; warnings: string[] } {
  const id = flags.id ?? newDiscoverId();
  const { source, live, tenantRoot, config, artifacts, allowUnverifiedBackup, warnings } = sourceFromFlags(
    { ...flags, id },
    env,
  );
  return {
    input: {
      discoverId: id,
      source,
      live,
      tenantRoot,
      config,
      artifacts,
      keepScratch: flags['keep-scratch'] ?? false,
      ...(allowUnverifiedBackup ? { allowUnverifiedBackup } : {}),
    },
    taskQueue: taskQueueFrom(flags['task-queue'], env),
    warnings,
  };
}

/** Starts `discover/<id>` after checking what needs a service, and waits for its summary. */
export async function runDiscover(
  client: Client,
  request: ReturnType<typeof buildDiscoverRequest>,
  onNoWorker: (message: string) => void,
): Promise<DiscoverSummary> {
  const { input, taskQueue } = request;
  await checkSourceReachable(input);
  const artifacts = `s3://${input.artifacts.bucket}/${input.artifacts.prefix}`;
  const handle = await client.workflow
    .start<(i: DiscoverInput) => Promise<DiscoverSummary>>('discover', {
      workflowId: discoverWorkflowId(input.discoverId),
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      taskQueue,
      args: [input],
      typedSearchAttributes: [
        { key: RestoreIdKey, value: input.discoverId },
        { key: RestoreKindKey, value: 'discover' },
        { key: RestorePhaseKey, value: 'preparing-scratch' },
      ],
      memo: { artifacts, live: input.live, tenantRoot: input.tenantRoot },
    })
    .catch((error: unknown) => {
      if (error instanceof WorkflowExecutionAlreadyStartedError)
        throw new UsageError(
          `discover ${input.discoverId} already exists: a discover id is used once. Choose another --id, or read its result with 'tenant-restore start --from-discover ${input.discoverId} ...'.`,
        );
      throw error;
    });
  if ((await workflowPollers(client, taskQueue).catch(() => 1)) === 0) onNoWorker(noWorkerWarning(taskQueue));
  try {
    return await handle.result();
  } catch (error) {
    throw new DiscoverFailedError(restoreFailureMessage(error));
  }
}

/** The discover workflow failed (a bad tenant root, a backup without it...): its message says why; exit 2. */
export class DiscoverFailedError extends UsageError {
  override name = 'DiscoverFailedError';
}

/**
 * The tenants a finished discover found to restore: absent ones, and partial ones too with `withPartial` (start's
 * --allow-partial). Read from S3, where the discover wrote them; the location comes from its workflow's memo.
 */
export async function discoverList(
  client: Client,
  discoverId: string,
  withPartial: boolean,
): Promise<{ text: string; location: string }> {
  let artifacts: string | undefined;
  try {
    const description = await client.workflow.getHandle(discoverWorkflowId(discoverId)).describe();
    if (description.status.name !== 'COMPLETED')
      throw new UsageError(
        `discover ${discoverId} is ${description.status.name.toLowerCase()}, not completed: its list is only written when it succeeds.`,
      );
    artifacts = (description.memo as { artifacts?: string } | undefined)?.artifacts;
  } catch (error) {
    if (error instanceof WorkflowNotFoundError)
      throw new RestoreNotFoundError(
        `no discover with id '${discoverId}' (workflow ${discoverWorkflowId(discoverId)}).`,
      );
    throw error;
  }
  if (!artifacts) throw new UsageError(`discover ${discoverId} has no artifacts location in its memo.`);
  const location = `${artifacts}${withPartial ? 'restore-list-partial.txt' : 'restore-list.txt'}`;
  const s3 = createS3Client();
  try {
    return { text: await getText(s3, parseS3Url(location)), location };
  } catch (error) {
    if (isNotFound(error)) throw new UsageError(`discover ${discoverId} wrote no list at ${location}.`);
    s3Unavailable(error);
  } finally {
    s3.destroy();
  }
}

/** `--write-list f`: the list in the format of `start --tenants-file`. */
export function writeList(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (error) {
    throw new UsageError(`cannot write --write-list ${path}: ${(error as Error).message}`);
  }
}
