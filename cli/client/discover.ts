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
import type { DiscoveredTenant, DiscoverSummary } from '../../activities/discover';
import { createS3Client, getJson, getText, parseS3Url } from '../../activities/s3';
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
import { discoverInput } from '../../activities/input-contract';
import { checkStartInput, taskQueueFrom } from './input';

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
  const { source, live, tenantRoot, config, artifacts, allowUnverifiedBackup, unsafeScratch, warnings } =
    sourceFromFlags({ ...flags, id }, env);
  const input: DiscoverInput = {
    discoverId: id,
    source,
    live,
    tenantRoot,
    config,
    artifacts,
    keepScratch: flags['keep-scratch'] ?? false,
    ...(allowUnverifiedBackup ? { allowUnverifiedBackup } : {}),
    ...(unsafeScratch ? { unsafeScratch } : {}),
  };
  checkStartInput('discover', discoverInput, input);
  return {
    input,
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
 * What `start --allow-partial` said: `count` is the number of partial tenants said back (`--allow-partial=<n>`);
 * undefined with the bare flag, which `--from-discover` refuses (checkPartialCount).
 */
export interface AllowPartial {
  count?: number;
}

/** A tenant of a discover's list that is not absent: what a restore with --allow-partial brings back of it. */
export interface PartialTenant {
  tenantId: string;
  /** Rows of the backup missing from live, all tables: what comes back. */
  rows: number;
  missing: Record<string, number>;
}

/**
 * The tenants a finished discover found to restore: absent ones, and with `withPartial` (start's --allow-partial,
 * discover's --include-partial) partial ones too, then also `partial` (each listed tenant that discover.json does not call absent, with its missing
 * rows) and `absent` (how many), for checkPartialCount. Read from S3, where the discover wrote them; the location comes
 * from its workflow's memo.
 */
export async function discoverList(
  client: Client,
  discoverId: string,
  withPartial: boolean,
): Promise<{ text: string; location: string; markdown: string; partial?: PartialTenant[]; absent?: number }> {
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
  const markdown = `${artifacts}discover.md`;
  const s3 = createS3Client();
  const read = async <T>(url: string, get: () => Promise<T>): Promise<T> => {
    try {
      return await get();
    } catch (error) {
      if (isNotFound(error)) throw new UsageError(`discover ${discoverId} wrote no ${url}.`);
      s3Unavailable(error);
    }
  };
  try {
    const text = await read(location, () => getText(s3, parseS3Url(location)));
    if (!withPartial) return { text, location, markdown };
    // Which of the listed tenants are partial, and how many rows each would get back: discover.json holds every
    // tenant that is not intact with its class and missing rows per table. A listed tenant it does not call absent
    // counts as partial: the count said back covers everything that is not plainly a deleted tenant.
    const json = `${artifacts}discover.json`;
    const { tenants } = await read(json, () => getJson<{ tenants: DiscoveredTenant[] }>(s3, parseS3Url(json)));
    const byId = new Map(tenants.map((t) => [t.tenantId, t]));
    const partial: PartialTenant[] = [];
    let absent = 0;
    for (const id of listedIds(text)) {
      const t = byId.get(id);
      if (t?.class === 'absent') absent += 1;
      else {
        const missing = t?.missing ?? {};
        partial.push({ tenantId: id, rows: Object.values(missing).reduce((s, n) => s + n, 0), missing });
      }
    }
    return { text, location, markdown, partial, absent };
  } finally {
    s3.destroy();
  }
}

/** The ids of a list in the format of --tenants-file (blank lines and # comments left out). */
const listedIds = (text: string): string[] =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));

/** How many of the partial tenants checkPartialCount names, those with the most rows that would come back first. */
export const partialShown = 10;

/**
 * `start --from-discover <id> --allow-partial=<n>`: partial tenants are restored only when n is their number. A partial
 * tenant is one whose root row is in live while rows of the backup are missing, which is also exactly what its own
 * users' deletions since the backup look like; the bare flag, or a wrong count, is refused with the count and the
 * tenants that would get the most rows back, so that the operator reads them before saying the number.
 */
export function checkPartialCount(
  discoverId: string,
  allowPartial: AllowPartial,
  found: { partial: PartialTenant[]; absent: number; markdown: string },
): void {
  const n = found.partial.length;
  if (allowPartial.count === n) return;
  const top = [...found.partial]
    .sort((a, b) => b.rows - a.rows || a.tenantId.localeCompare(b.tenantId, 'en', { numeric: true }))
    .slice(0, partialShown);
  const total = found.partial.reduce((s, t) => s + t.rows, 0);
  const said =
    allowPartial.count === undefined
      ? `--allow-partial needs the number of partial tenants said back (--allow-partial=<n>)`
      : `--allow-partial=${allowPartial.count} does not match`;
  const lines = [
    `${said}: discover ${discoverId} found ${n} partial tenant(s), whose root row is in live while rows of the backup are missing: damage, or their own users' deletions since the backup, which a restore brings back too.`,
  ];
  if (n)
    lines.push(
      `The ${top.length} with the most rows that would come back (${total} row(s) in all):`,
      ...top.map(
        (t) =>
          `  tenant ${t.tenantId}: ${t.rows} row(s)${
            Object.keys(t.missing).length
              ? ` (${Object.entries(t.missing)
                  .sort((a, b) => b[1] - a[1])
                  .map(([table, rows]) => `${table} ${rows}`)
                  .join(', ')})`
              : ''
          }`,
      ),
      `Read every one in ${found.markdown}. If they are all to come back, start again with --allow-partial=${n}; without --allow-partial, only the ${found.absent} absent tenant(s) (root row gone: purged, or an account closed) are restored. Nothing was started.`,
    );
  else
    lines.push(
      `Leave --allow-partial out (or say --allow-partial=0) to restore its ${found.absent} absent tenant(s). Nothing was started.`,
    );
  throw new UsageError(lines.join('\n'));
}

/** `--write-list f`: the list in the format of `start --tenants-file`. */
export function writeList(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (error) {
    throw new UsageError(`cannot write --write-list ${path}: ${(error as Error).message}`);
  }
}

/** Every class but intact: discover.json lists each tenant with a difference; intact ones are only counted. */
export const listedClasses = ['absent', 'partial', 'changed', 'grown', 'new'] as const;

/**
 * `discover --json`: the tenants of each class with their missing, added and changed rows per table, read from the
 * discover.json the workflow wrote to S3 (the rows never pass through Temporal). Intact tenants are counted only.
 */
export async function tenantsByClass(
  summary: DiscoverSummary,
): Promise<Record<(typeof listedClasses)[number], DiscoveredTenant[]>> {
  const location = summary.artifacts.json;
  let tenants: DiscoveredTenant[];
  try {
    ({ tenants } = await getJson<{ tenants: DiscoveredTenant[] }>(createS3Client(), parseS3Url(location)));
  } catch (error) {
    if (isNotFound(error)) throw new UsageError(`discover ${summary.discoverId} wrote no ${location}.`);
    s3Unavailable(error);
  }
  return Object.fromEntries(listedClasses.map((c) => [c, tenants.filter((t) => t.class === c)])) as Record<
    (typeof listedClasses)[number],
    DiscoveredTenant[]
  >;
}
