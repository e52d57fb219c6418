/**
 * preflightTenant: before a tenant's copy, answers from both databases, without writing to any live table:
 * is the tenant in the backup (else TenantNotInBackupError)? what is each tenant's state in live (absent, partial,
 * present: see activities/tenant-state.ts; the workflow refuses present and partial tenants before their copy)?
 * how many of its backup rows already exist in live with other content (the policy's conflicts)? does any of its keys
 * belong to another tenant in live (CrossTenantConflictError, whatever the policy)? Under policy `fail`, a conflict is
 * a ConflictPolicyError here already, so that nothing is attempted.
 *
 * To compare keys across two databases, the tenant's keys and a hash of each backup row are streamed into a temporary
 * table of the preflight's own session on live (COPY, never through Node arrays); the transaction always rolls back.
 */
import { pipeline } from 'node:stream/promises';
import { copyFrom, copyTo, type Pool, type PoolClient } from './db';
import { analyzeStaging, assertTenantsInBackup, noParallelWorkersSql, type YieldToLive } from './copy';
import { ConflictPolicyError, CrossTenantConflictError } from './errors';
import { assertPlan, qualify, renderContext, type Plan } from './plan';
import { otherOwnerPredicate, ownedPredicate, setTenantIdsSql } from './plan/ownership';
import { canonicalTextSettingsSql, columnList, keyMatch, rowText, writtenNames } from './plan/sql';
import type { ConflictPolicy, PreflightResult, TenantId } from './restore-types';
import { classifyTenants, unitState } from './tenant-state';

export interface PreflightInput {
  scratch: Pool;
  live: Pool;
  plan: Plan;
  tenantId: TenantId;
  /** A group of tenants checked together (set-based); the result then sums over the group. Default: [tenantId]. */
  tenantIds?: TenantId[];
  conflict: ConflictPolicy;
  yieldToLive?: YieldToLive;
  /** `state`: only "in the backup?" and "what does live hold?"; the key checks are left to the copy (groups). */
  checks?: 'full' | 'state';
}

export async function beginCanonical(pool: Pool, mode: string, tenantIds: TenantId[]): Promise<PoolClient> {
  const client = await pool.connect();
  try {
    await client.query(`BEGIN ${mode}`);
    await client.query(noParallelWorkersSql);
    // Row text must be identical on both sides for the hashes to be comparable.
    await client.query(canonicalTextSettingsSql);
    await client.query(setTenantIdsSql, [tenantIds]);
    return client;
  } catch (error) {
    client.release(true);
    throw error;
  }
}

export async function preflightTenant(input: PreflightInput): Promise<PreflightResult> {
  const { plan, tenantId, conflict } = input;
  assertPlan(plan);
  const tenantIds = input.tenantIds ?? [tenantId];
  const ctx = renderContext(plan, tenantIds);
  const who = tenantIds.length === 1 ? `tenant ${tenantIds[0]}` : `tenants ${tenantIds.join(', ')}`;
  const scratch = await beginCanonical(input.scratch, 'ISOLATION LEVEL REPEATABLE READ READ ONLY', tenantIds);
  let live: PoolClient | undefined;
  let broken = false;
  try {
    await assertTenantsInBackup(scratch, plan, tenantIds);
    live = await beginCanonical(input.live, '', tenantIds);
    if (input.checks === 'state') {
      const throttledMs = (await input.yieldToLive?.(live)) ?? 0;
      const tenants = await classifyTenants(scratch, live, plan, tenantIds);
      return { tenantId, liveState: unitState(tenants), tenants, rowsInBackup: {}, conflicts: {}, checks: 'state', throttledMs };
    }
    // A tenant still in live is refused (or, partial and allowed, gets its missing rows under skip) whatever the
    // policy says: its key checks would only report its own rows as conflicts, and under `fail` refuse it with advice
    // to switch policies. The copy repeats the key checks inside its transaction for whatever goes on.
    const tenants = await classifyTenants(scratch, live, plan, tenantIds);
    if (unitState(tenants) !== 'absent') return { tenantId, liveState: unitState(tenants), tenants, rowsInBackup: {}, conflicts: {}, checks: 'state' };
    const rowsInBackup: Record<string, number> = {};
    const conflicts: Record<string, number> = {};
    let throttledMs = 0;
    for (const [i, table] of plan.tables.entries()) {
      if (table.role === 'shared') continue;
      throttledMs += (await input.yieldToLive?.(live)) ?? 0;
      const target = qualify(plan, table.key);
      const keyColumns = [...new Set(table.uniqueKeys.flat())];
      const stagingName = `tr_preflight_${i}`;
      await live.query(`CREATE TEMP TABLE ${stagingName} ON COMMIT DROP AS SELECT ${columnList(keyColumns)}, ''::text AS tr_row FROM ${target} WITH NO DATA`);
      const names = writtenNames(table);
      const source = scratch.query(copyTo(`COPY (SELECT ${columnList(keyColumns, 't')}, md5(${rowText(names, 't')}) FROM ${target} t WHERE ${ownedPredicate(table.key, 't', ctx)}) TO STDOUT`));
      const sink = live.query(copyFrom(`COPY ${stagingName} (${columnList(keyColumns)}, tr_row) FROM STDIN`));
      await pipeline(source, sink);
      await analyzeStaging(live, stagingName);
      rowsInBackup[table.key] = sink.rowCount;

      for (const key of table.uniqueKeys) {
        // Same rule as the copy: another tenant's row (alone or shared with this tenant) that differs from the backup's.
        const { rows } = await live.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${stagingName} s JOIN ${target} t ON ${keyMatch(key, 's', 't')} WHERE md5(${rowText(names, 't')}) <> s.tr_row AND ${otherOwnerPredicate(table.key, 't', ctx)}`,
        );
        const n = Number(rows[0]!.n);
        if (n > 0) {
          throw new CrossTenantConflictError(
            `${n} row(s) of ${table.key} of ${who} have a key (${key.join(', ')}) that another tenant holds in live. No policy overwrites another tenant's row: ` +
              `find the rows with that key in live and decide which tenant owns them, then restore ${who} again.`,
            { table: table.key, key, rows: n, tenantIds },
          );
        }
      }
      const { rows } = await live.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${stagingName} s JOIN ${target} t ON ${keyMatch(table.primaryKey, 's', 't')} WHERE md5(${rowText(names, 't')}) <> s.tr_row`,
      );
      conflicts[table.key] = Number(rows[0]!.n);
      if (conflict === 'fail' && conflicts[table.key]! > 0) {
        throw new ConflictPolicyError(
          `${conflicts[table.key]} row(s) of ${table.key} of ${who} already exist in live with other content, and the conflict policy is 'fail'. ` +
            `Nothing was written. Rerun with --conflict skip (keep live's rows) or --conflict overwrite (take the backup's).`,
          { table: table.key, rows: conflicts[table.key], tenantIds },
        );
      }
    }
    return { tenantId, liveState: 'absent', tenants, rowsInBackup, conflicts, throttledMs, checks: 'full' };
  } catch (error) {
    broken = true;
    throw error;
  } finally {
    await scratch.query('ROLLBACK').catch(() => undefined);
    scratch.release(broken);
    if (live) {
      await live.query('ROLLBACK').catch(() => undefined);
      live.release(broken);
    }
  }
}
