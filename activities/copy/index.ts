/**
 * copyTenant: moves one tenant (or a unit of several) from scratch into live, table by table in plan order. The driver
 * picks the path; each path is a file of this folder:
 *
 * - direct.ts: every owned table piped from scratch straight into its target with COPY, in one transaction (the usual
 *   case: tenants absent from live, nothing of theirs there). Any key already in live rolls it back, and the unit goes
 *   staged.
 * - staged.ts: every table staged in a temp table on live, then merged under the conflict policy with the cross-tenant
 *   guard, in one transaction (partial tenants, retries over committed rows, conflicts, cycles under FK triggers).
 * - chunked.ts: tenants larger than `chunkRows` in one table, in chunks of one staged transaction each, resumable.
 * - locks.ts: the tenants' advisory locks, held for the whole copy; transaction.ts: the live transaction and COMMIT.
 *
 * Safety (DESIGN.md I1-I3):
 * - Never DELETE or TRUNCATE on live (I2); staging tables are temporary and dropped at COMMIT.
 * - A row of another tenant is never written (I1): a direct COPY only inserts, and fails on any key live holds; the
 *   staged merge looks every unique key of the staged rows up in live first (CrossTenantConflictError) and repeats the
 *   ownership test in its overwrite.
 * - Triggers: other tenants keep writing, so no trigger is ever disabled for a table. Instead, when the role may,
 *   `SET LOCAL session_replication_role = replica` turns off user triggers and FK triggers for this transaction's
 *   session only. Because FK triggers are then off, the engine checks every FK of the written rows itself before
 *   COMMIT, taking FOR KEY SHARE locks on the parents exactly as PostgreSQL's own FK check would, so a concurrent
 *   delete of a parent cannot slip in before COMMIT (the direct path skips only parents its own transaction inserted,
 *   which no other session can see). A dangling reference aborts with DanglingReferenceError.
 * - Sequences move forward past restored ids, never backwards.
 */
import type { Pool, PoolClient } from '../db';
import type { Pacer, YieldToLive } from '../live-pressure';
import { assertPlan, renderContext, type Plan } from '../plan';
import type { RenderContext } from '../plan/ownership';
import type { ConflictPolicy, CopyCheckpoint, CopyPath, CopyResult, TenantId } from '../restore-types';
import { assertScratchAlive } from '../scratch-alive';
import { assertTenantsInBackup, largestTable, ownedRowCount, ownedRowsAtMost } from '../sql/presence';
import { assertSameEncoding, closeSession, openSession, sessionSetup } from '../sql/session';
import { copyChunked } from './chunked';
import { chunkedDirectEligible, HandOver } from './chunked-direct';
import { checkAbort, tooLarge, type CopyTotals } from './common';
import { copyDirect, DirectCopyRefused } from './direct';
import { lockTenants } from './locks';
import { copyStaged } from './staged';

export interface CopyTenantInput {
  scratch: Pool;
  live: Pool;
  plan: Plan;
  tenantIds: TenantId[];
  conflict: ConflictPolicy;
  /** Above this many rows of the tenant in one table, copy in chunks (one transaction each). */
  chunkRows?: number;
  resumeFrom?: CopyCheckpoint;
  onCheckpoint?: (checkpoint: CopyCheckpoint) => void | Promise<void>;
  signal?: AbortSignal;
  /** Called on the live session before each table: waits while live is busy (adaptive throttling); returns ms waited. */
  yieldToLive?: YieldToLive;
  /** Paces the direct paths' COPY pipes to live's latency budget (live-pressure.ts LiveGovernor). */
  pacer?: Pacer;
  /** Report the primary keys of the rows inserted (a partial tenant's report lists exactly which rows came back). */
  recordKeys?: boolean;
  /** Tenants preflight found absent and nothing of this restore wrote yet: checked again under the tenant lock. */
  expectAbsent?: TenantId[];
  /**
   * A retry whose earlier attempts reported no commit (one may have committed and died before its heartbeat): a tenant
   * of `expectAbsent` found present is accepted only when live's rows equal scratch's and no other restore announced it.
   */
  presentMayBeOwn?: boolean;
  /**
   * An earlier attempt of this copy committed (its heartbeat, or its transaction id in S3, says so): this attempt copies
   * again over its own rows, and the rows it finds identical to the backup's count as restored, not as nothing.
   */
  earlierAttemptCommitted?: boolean;
  /** Names the lock session (`tenant-restore-lock <restoreId>`) and is announced on the tenants' channels at COMMIT. */
  restoreId?: string;
  /** Called when a tenant's lock is held by another session, before waiting for it (`holder` as operators find it). */
  onLockWait?: (tenantId: TenantId, holder: string) => void | Promise<void>;
  /** Called right after each COMMIT on live: from then on, rows of this copy are in live. */
  onCommitted?: () => void | Promise<void>;
  /**
   * Called inside each transaction on live right before its COMMIT, with the transaction's id: recorded where a retry
   * can read it (S3), it proves after a crash whether this copy committed (pg_xact_status), which a heartbeat sent after
   * the COMMIT cannot (it may die with the worker, or wait in the SDK's throttle). `written`, for a partial tenant's
   * copy (`recordKeys`): the rows and keys the transaction inserted, which a retry cannot tell from the rows its users
   * kept.
   */
  beforeCommit?: (transactionId: string, written?: CopyTotals) => void | Promise<void>;
  /**
   * An incident window's revert (activities/window.ts): scratch is T0 narrowed to the window's delta, and the rows the
   * window changed are set back to T0 where live still holds their T1 version (staged.ts revertChanged). Only the
   * staged path does that: the direct path is not tried.
   */
  window?: boolean;
  /**
   * `false`: never try the direct path (the staged path for every unit, as releases before it did). For measurements
   * side by side and for tests that pin the staged path; the default tries it.
   */
  directCopy?: boolean;
}

/** Rows of the tenant per table in scratch, to decide between one transaction and chunks. */
async function countRows(scratch: PoolClient, plan: Plan, ctx: RenderContext): Promise<number[]> {
  const counts: number[] = [];
  for (const t of plan.tables) {
    const { rows } = await scratch.query<{ n: string }>(ownedRowCount(plan, ctx, t));
    counts.push(Number(rows[0]!.n));
  }
  return counts;
}

/**
 * Whether the tenants hold more than `chunkRows` rows of the owned table that scratch's statistics say is largest: one
 * count of at most `chunkRows + 1` rows. Only a shortcut: a unit under it may still find another table too large.
 */
async function largestTableExceeds(
  scratch: PoolClient,
  plan: Plan,
  ctx: RenderContext,
  chunkRows: number,
): Promise<boolean> {
  const owned = plan.tables.filter((t) => t.role !== 'shared');
  const { rows } = await scratch.query<{ key: string }>(largestTable(plan, owned));
  const table = owned.find((t) => t.key === rows[0]?.key);
  if (!table) return false;
  const { rows: counted } = await scratch.query<{ n: string }>(ownedRowsAtMost(plan, ctx, table, chunkRows + 1));
  return Number(counted[0]!.n) > chunkRows;
}

/**
 * The direct path is tried when nothing of the tenants is expected in live: not for a partial tenant (its keys are
 * recorded, and most of its rows are there), nor for a retry over rows an earlier attempt committed (the first COPY
 * would meet them).
 */
function tryDirect(input: CopyTenantInput): boolean {
  return (
    input.directCopy !== false &&
    !input.recordKeys &&
    !input.earlierAttemptCommitted &&
    !input.presentMayBeOwn &&
    !input.window
  );
}

export async function copyTenant(input: CopyTenantInput): Promise<CopyResult> {
  const started = Date.now();
  const { plan, tenantIds, signal } = input;
  assertPlan(plan);
  checkAbort(signal);
  const ctx = renderContext(plan, tenantIds);
  // Every table is read from one snapshot of scratch. Both sides of the COPY in the canonical text settings (ISO dates,
  // UTF8, UTC, full float digits): scratch's text of a row must read back in live as the same values.
  const openScratch = async () => {
    const session = await openSession(
      input.scratch,
      sessionSetup({ mode: 'snapshot', canonicalText: true, tenantIds }),
    );
    try {
      // A scratch emptied by crash recovery (its tables are unlogged) is never read as the backup.
      await assertScratchAlive(session);
    } catch (error) {
      await closeSession(session, true);
      throw error;
    }
    return session;
  };
  let scratch = await openScratch();
  let scratchBroken = false;
  let lock: Awaited<ReturnType<typeof lockTenants>> | undefined;
  try {
    // The plan checked it; checked again here, before anything is written, for a copy given another live or scratch.
    await assertSameEncoding(scratch, input.live);
    await assertTenantsInBackup(scratch, plan, tenantIds);
    // A checkpoint is evidence of an earlier commit of this copy: those tenants are this restore's own.
    lock = await lockTenants(input, input.resumeFrom ? [] : (input.expectAbsent ?? []));
    // A partial tenant goes in one transaction: its keys are recorded from that transaction's inserts, and the chunked
    // path's second pass (deferred FK columns) must never touch a row its users kept.
    const chunkRows = input.recordKeys ? undefined : input.chunkRows;
    let throttledMs = 0;
    const yieldToLive: YieldToLive = async (live, signal) => {
      const waited = (await input.yieldToLive?.(live, signal)) ?? 0;
      throttledMs += waited;
      return waited;
    };
    const copy = { ...input, yieldToLive };
    let result: CopyTotals;
    let path: CopyPath;
    let directRefused: string | undefined;
    if (input.resumeFrom) {
      // The chunk size of the attempt that wrote the checkpoint, when the input does not carry it: the largest table.
      const size = chunkRows ?? Math.max(...(await countRows(scratch, plan, ctx)), 1);
      result = await copyChunked(copy, scratch, ctx, size);
      path = 'chunked';
    } else {
      // One transaction unless a table holds more than chunkRows rows of the tenants. Nothing is counted first: the
      // transaction copies at most chunkRows + 1 rows per table, and one that finds more is rolled back (nothing of it
      // committed) and the copy goes in chunks.
      let whole: CopyTotals | typeof tooLarge | undefined;
      path = 'direct';
      // A tenant that is plainly too large goes in chunks at once: the one-transaction attempt would copy up to
      // chunkRows rows of every table before it finds out, and roll them back (5% of a 5M-row tenant's copy).
      if (chunkRows !== undefined && (await largestTableExceeds(scratch, plan, ctx, chunkRows))) whole = tooLarge;
      else if (tryDirect(input)) {
        try {
          whole = await copyDirect(copy, scratch, ctx, chunkRows);
        } catch (error) {
          if (!(error instanceof DirectCopyRefused)) throw error;
          // Rolled back, nothing committed. The scratch session's COPY was cut mid-stream: it is not reused.
          directRefused = error.reason;
          await closeSession(scratch, true);
          scratch = await openScratch();
        }
      }
      if (whole === undefined) {
        path = 'staged';
        whole = await copyStaged(copy, scratch, ctx, chunkRows);
      }
      if (whole === tooLarge) {
        const direct = input.directCopy !== false && chunkedDirectEligible(plan);
        path = direct ? 'chunked-direct' : 'chunked';
        try {
          result = await copyChunked(copy, scratch, ctx, chunkRows!, direct);
        } catch (error) {
          if (!(error instanceof HandOver)) throw error;
          // Nothing of the chunk that met it committed; the staged chunked path goes on from the last checkpoint. The
          // scratch session's COPY may have been cut mid-stream: it is not reused.
          directRefused = error.reason;
          path = 'chunked';
          await closeSession(scratch, true);
          scratch = await openScratch();
          result = await copyChunked(
            { ...copy, resumeFrom: error.checkpoint },
            scratch,
            ctx,
            chunkRows!,
            false,
            error.run,
          );
        }
      } else result = whole;
    }
    return {
      ...result,
      tenantIds,
      chunked: path === 'chunked' || path === 'chunked-direct',
      path,
      ...(directRefused ? { directRefused } : {}),
      durationMs: Date.now() - started,
      throttledMs,
    };
  } catch (error) {
    scratchBroken = true;
    throw error;
  } finally {
    await closeSession(scratch, scratchBroken);
    // Ending the session releases its advisory locks.
    await lock?.end().catch(() => undefined);
  }
}
