/**
 * In-memory activities for the workflow unit tests (test/unit/workflows.test.ts): the orchestration runs for real,
 * the engine does not. Each restore id has its own scenario (who is still in live, which copy fails, whether copies
 * wait for the test to release them) and its own record of what the workflows asked for, in order.
 */
import { ApplicationFailure, cancelled, heartbeat } from '@temporalio/activity';
import type { Activities } from '../../activities';
import type { CopyResult, PreflightResult, TenantId, ValidationResult } from '../../activities/restore-types';

export interface Scenario {
  /** Tenants the preflight classifies `present` (root row in live, nothing missing); the others are `absent`. */
  present?: TenantId[];
  /** Copies wait until the test releases them (`release`), so that the test sees how many run at once. */
  holdCopies?: boolean;
  /**
   * An engine error for the copy of this unit, thrown as a non-retryable ApplicationFailure of that type; `committed`:
   * the copy had committed some of its rows first (its details say so, as activities/boundary.ts copyCall does).
   */
  copyFails?: (tenantIds: TenantId[]) => { type: string; message: string; committed?: boolean } | undefined;
  /** Tenants that are `present` from the n-th preflight of the restore on (1-based): restored by someone in between. */
  presentFrom?: Record<TenantId, number>;
}

export interface RestoreRecord {
  preflights: TenantId[][];
  copies: Array<{ tenantIds: TenantId[]; expectAbsent?: TenantId[] }>;
  /** Copies running now, and the most that ever ran at once. */
  copying: number;
  maxCopying: number;
  /** Held copies, by their unit's tenants; calling the function lets the copy finish. */
  held: Array<{ tenantIds: TenantId[]; release: () => void }>;
  actions: Array<{ action: string; tenantIds: TenantId[] }>;
}

/** How often a held copy heartbeats: a cancellation reaches an activity only through its heartbeats. */
const heartbeatEveryMs = 100;

export function createMockActivities() {
  const scenarios = new Map<string, Scenario>();
  const records = new Map<string, RestoreRecord>();
  const lists = new Map<string, TenantId[]>();

  function record(restoreId: string): RestoreRecord {
    let r = records.get(restoreId);
    if (!r) {
      r = { preflights: [], copies: [], copying: 0, maxCopying: 0, held: [], actions: [] };
      records.set(restoreId, r);
    }
    return r;
  }

  async function hold(r: RestoreRecord, tenantIds: TenantId[]): Promise<void> {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const entry = { tenantIds, release };
    r.held.push(entry);
    const beat = setInterval(() => heartbeat(), heartbeatEveryMs);
    try {
      await Promise.race([released, cancelled()]);
    } finally {
      clearInterval(beat);
      r.held.splice(r.held.indexOf(entry), 1);
    }
  }

  const activities = {
    async stageTenantList(input) {
      const key = `${input.artifacts.prefix}tenants.json`;
      lists.set(key, input.tenants ?? []);
      return { bucket: input.artifacts.bucket, key, count: input.tenants?.length ?? 0 };
    },
    async readTenantPage(input) {
      return (lists.get(input.list.key) ?? []).slice(input.offset, input.offset + input.limit);
    },
    async checkScratch(input) {
      return { ref: input.scratch, owned: false, reused: true, durationMs: 0 };
    },
    async buildRestorePlan(input) {
      return {
        bucket: input.artifacts.bucket,
        key: `${input.artifacts.prefix}plan.json`,
        digest: 'plan-digest',
        tables: 1,
        rootKeyType: 'text',
      };
    },
    async preflightTenantRestore(input): Promise<PreflightResult> {
      const ids = input.tenantIds ?? [input.tenantId];
      record(input.restoreId).preflights.push(ids);
      const scenario = scenarios.get(input.restoreId);
      const nth = record(input.restoreId).preflights.length;
      const present = new Set([
        ...(scenario?.present ?? []),
        ...Object.entries(scenario?.presentFrom ?? {})
          .filter(([, from]) => nth >= from)
          .map(([id]) => id),
      ]);
      const tenants = Object.fromEntries(
        ids.map((id) => [id, { state: present.has(id) ? ('present' as const) : ('absent' as const) }]),
      );
      return {
        tenantId: ids[0]!,
        liveState: ids.some((id) => present.has(id)) ? 'present' : 'absent',
        tenants,
        rowsInBackup: { 'app.tenants': ids.length },
        conflicts: {},
        checks: input.preflightChecks ?? 'full',
      };
    },
    async copyTenantRows(input): Promise<CopyResult> {
      const ids = input.tenantIds ?? [input.tenantId];
      const scenario = scenarios.get(input.restoreId) ?? {};
      const r = record(input.restoreId);
      r.copies.push({ tenantIds: ids, ...(input.expectAbsent ? { expectAbsent: input.expectAbsent } : {}) });
      r.copying += 1;
      r.maxCopying = Math.max(r.maxCopying, r.copying);
      try {
        const failure = scenario.copyFails?.(ids);
        if (failure)
          throw ApplicationFailure.create({
            type: failure.type,
            message: failure.message,
            nonRetryable: true,
            ...(failure.committed ? { details: [{ committed: true }] } : {}),
          });
        if (scenario.holdCopies) await hold(r, ids);
        return {
          tenantIds: ids,
          rows: { 'app.tenants': ids.length },
          skipped: {},
          parentClosure: [],
          chunked: false,
          durationMs: 1,
        };
      } finally {
        r.copying -= 1;
      }
    },
    async validateTenantRows(input): Promise<ValidationResult> {
      const n = (input.tenantIds ?? [input.tenantId]).length;
      return {
        tenantId: input.tenantId,
        ok: true,
        tables: [
          { table: 'app.tenants', scratchCount: n, liveCount: n, scratchChecksum: 'c', liveChecksum: 'c', match: true },
        ],
        orphans: [],
      };
    },
    async runReenableAction(input) {
      record(input.restoreId).actions.push({ action: input.action.name, tenantIds: [input.tenantId] });
      return { name: input.action.name, attempts: 1, detail: 'done', durationMs: 1 };
    },
    async runReenableActionForTenants(input) {
      record(input.restoreId).actions.push({ action: input.action.name, tenantIds: input.tenantIds });
      return { name: input.action.name, attempts: 1, detail: 'done', durationMs: 1, rejected: [] };
    },
    async recordTenantResult(input) {
      return { bucket: input.artifacts.bucket, key: `${input.artifacts.prefix}tenants/${input.result.tenantId}.json` };
    },
    async recordGroupResults(input) {
      return input.tenants.length;
    },
    async writeRestoreReport(input) {
      return { json: `${input.artifacts.prefix}report.json`, markdown: `${input.artifacts.prefix}report.md` };
    },
    async dropScratch() {
      return { dropped: false };
    },
  } satisfies Partial<Activities>;

  return {
    activities,
    /** Sets how the activities behave for one restore (call before starting it). */
    scenario(restoreId: string, scenario: Scenario): void {
      scenarios.set(restoreId, scenario);
    },
    record,
    /** Lets the held copy of the unit that holds `tenantId` finish; false when no such copy is waiting. */
    release(restoreId: string, tenantId: TenantId): boolean {
      const entry = record(restoreId).held.find((h) => h.tenantIds.includes(tenantId));
      entry?.release();
      return entry !== undefined;
    },
    releaseAll(): void {
      for (const r of records.values()) for (const h of [...r.held]) h.release();
    },
  };
}
