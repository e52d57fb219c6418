/** What the copy's paths (direct, staged, chunked) share: cancellation, per-table outcomes and the copy's totals. */
import type { Plan, PlanTable } from '../plan';
import type { CopyCheckpoint, CopyResult } from '../restore-types';

export class Aborted extends Error {
  override name = 'AbortError';
}

export function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Aborted('copy cancelled');
}

export interface TableOutcome {
  staged: number;
  written: number;
  /** Staged keys already in live with other content, and kept (skip). */
  kept: number;
  /** Staged keys already in live with other content (whatever the policy did with them). */
  conflicts: number;
}

export type CopyTotals = Pick<CopyResult, 'rows' | 'skipped' | 'parentClosure' | 'restoredKeys' | 'reverted'> & {
  conflicts: Record<string, number>;
};

export function emptyTotals(plan: Plan, from?: CopyCheckpoint): CopyTotals {
  const rows: Record<string, number> = {};
  const skipped: Record<string, number> = {};
  const conflicts: Record<string, number> = {};
  for (const t of plan.tables)
    if (t.role !== 'shared') {
      rows[t.key] = from?.rows[t.key] ?? 0;
      skipped[t.key] = 0;
      conflicts[t.key] = 0;
    }
  const parentClosure = plan.tables
    .filter((t) => t.role === 'shared' && (from?.rows[t.key] ?? 0) > 0)
    .map((t) => ({ table: t.key, rows: from!.rows[t.key]! }));
  return { rows, skipped, conflicts, parentClosure };
}

/**
 * `countIdentical`: in a chunked copy, a staged row already in live with the backup's content was written by an earlier
 * attempt of the same chunk (committed, but its checkpoint was lost with the worker), so it counts as restored; the
 * totals then cover the tenant exactly once however often a chunk was replayed.
 */
export function addOutcome(totals: CopyTotals, table: PlanTable, outcome: TableOutcome, countIdentical = false): void {
  if (table.role === 'shared') {
    if (outcome.written === 0) return;
    const entry = totals.parentClosure.find((p) => p.table === table.key);
    if (entry) entry.rows += outcome.written;
    else totals.parentClosure.push({ table: table.key, rows: outcome.written });
    return;
  }
  const identical = countIdentical ? outcome.staged - outcome.written - outcome.kept : 0;
  totals.rows[table.key] = (totals.rows[table.key] ?? 0) + outcome.written + identical;
  totals.skipped[table.key] = (totals.skipped[table.key] ?? 0) + outcome.kept;
  totals.conflicts[table.key] = (totals.conflicts[table.key] ?? 0) + outcome.conflicts;
}

/** What copyOneTransaction returns when a table holds more than chunkRows rows of the tenants (rolled back). */
export const tooLarge = Symbol('more than chunkRows');

export class TooLargeForOneTransaction extends Error {}

/**
 * A retry of a partial tenant's copy after an earlier attempt committed: the retry found that attempt's inserts
 * identical to the backup and counted them as nothing, as it must count the rows the tenant's users kept. `earlier` is
 * what each committed attempt recorded before its COMMIT; its rows, shared parents and keys are added to the retry's.
 * What was kept, and the conflicts, are the retry's own: it saw the same rows of the users as the earlier attempts did.
 */
export function withEarlierWrites<T extends Pick<CopyTotals, 'rows' | 'parentClosure' | 'restoredKeys' | 'reverted'>>(
  result: T,
  earlier: CopyTotals[],
): T {
  const rows = { ...result.rows };
  const parentClosure = result.parentClosure.map((p) => ({ ...p }));
  let restoredKeys = result.restoredKeys && { ...result.restoredKeys };
  let reverted = result.reverted && { ...result.reverted };
  for (const e of earlier) {
    for (const [table, n] of Object.entries(e.rows)) rows[table] = (rows[table] ?? 0) + n;
    for (const [table, n] of Object.entries(e.reverted ?? {})) (reverted ??= {})[table] = (reverted[table] ?? 0) + n;
    for (const p of e.parentClosure) {
      const entry = parentClosure.find((q) => q.table === p.table);
      if (entry) entry.rows += p.rows;
      else parentClosure.push({ ...p });
    }
    for (const [table, k] of Object.entries(e.restoredKeys ?? {})) {
      const mine = restoredKeys?.[table];
      const seen = new Set(mine?.keys.map((key) => JSON.stringify(key)));
      const keys = [...(mine?.keys ?? []), ...k.keys.filter((key) => !seen.has(JSON.stringify(key)))];
      (restoredKeys ??= {})[table] = { keys, total: (mine?.total ?? 0) + k.total };
    }
  }
  return {
    ...result,
    rows,
    parentClosure,
    ...(restoredKeys ? { restoredKeys } : {}),
    ...(reverted ? { reverted } : {}),
  };
}
