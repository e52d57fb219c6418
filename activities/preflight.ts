/**
 * preflightTenant: before a tenant's copy, answers from both databases, without writing to any live table:
 * is the tenant in the backup (else TenantNotInBackupError)? what is each tenant's state in live (absent, partial,
 * present: see activities/sql/presence.ts; the workflow refuses present and partial tenants before their copy)?
 * how many of its backup rows already exist in live with other content (the policy's conflicts)? does any of its keys
 * belong to another tenant in live (CrossTenantConflictError, whatever the policy)? Under policy `fail`, a conflict is
 * a ConflictPolicyError here already, so that nothing is attempted.
 *
 * To compare keys across two databases, the tenant's keys and a hash of each backup row are streamed into a temporary
 * table of the preflight's own session on live (COPY, never through Node arrays); the transaction always rolls back.
 */
import { assertPlan, renderContext } from './plan';
import type { PreflightResult } from './restore-types';
import { assertNoCrossTenantKeys } from './sql/cross-tenant';
import { conflictCount, conflictPolicyRefusal } from './sql/merge';
import { assertTenantsInBackup, classifyTenants, unitState } from './sql/presence';
import { withComparedSessions, type ComparedStepInput } from './sql/session';
import { stageRows, stagingName } from './sql/stage';

export interface PreflightInput extends ComparedStepInput {
  /** `state`: only "in the backup?" and "what does live hold?"; the key checks are left to the copy (groups). */
  checks?: 'full' | 'state';
}

export async function preflightTenant(input: PreflightInput): Promise<PreflightResult> {
  const { plan, tenantId, conflict } = input;
  assertPlan(plan);
  const tenantIds = input.tenantIds ?? [tenantId];
  const ctx = renderContext(plan, tenantIds);
  return withComparedSessions(input, tenantIds, 'write', async (scratch, live) => {
    await assertTenantsInBackup(scratch, plan, tenantIds);
    if (input.checks === 'state') {
      const throttledMs = (await input.yieldToLive?.(live)) ?? 0;
      const tenants = await classifyTenants(scratch, live, plan, tenantIds);
      return {
        tenantId,
        liveState: unitState(tenants),
        tenants,
        rowsInBackup: {},
        conflicts: {},
        checks: 'state',
        throttledMs,
      };
    }
    // A tenant still in live is refused (or, partial and allowed, gets its missing rows under skip) whatever the
    // policy says: its key checks would only report its own rows as conflicts, and under `fail` refuse it with advice
    // to switch policies. The copy repeats the key checks inside its transaction for whatever goes on.
    const tenants = await classifyTenants(scratch, live, plan, tenantIds);
    if (unitState(tenants) !== 'absent')
      return { tenantId, liveState: unitState(tenants), tenants, rowsInBackup: {}, conflicts: {}, checks: 'state' };
    const rowsInBackup: Record<string, number> = {};
    const conflicts: Record<string, number> = {};
    let throttledMs = 0;
    for (const [i, table] of plan.tables.entries()) {
      if (table.role === 'shared') continue;
      throttledMs += (await input.yieldToLive?.(live)) ?? 0;
      const shape = { kind: 'hashed' as const, columns: [...new Set(table.uniqueKeys.flat())] };
      const staging = stagingName(`tr_preflight_${i}`, table, shape);
      rowsInBackup[table.key] = await stageRows(scratch, live, plan, ctx, table, staging, shape, { analyze: 'always' });
      // Same rule as the copy: another tenant's row (alone or shared with this tenant) that differs from the backup's.
      await assertNoCrossTenantKeys(live, plan, ctx, table, staging, tenantIds, 'hashed');
      const { rows } = await live.query<{ n: string }>(conflictCount(plan, table, staging, 'hashed'));
      conflicts[table.key] = Number(rows[0]!.n);
      if (conflict === 'fail' && conflicts[table.key]! > 0)
        throw conflictPolicyRefusal(table.key, conflicts[table.key]!, tenantIds);
    }
    return { tenantId, liveState: 'absent', tenants, rowsInBackup, conflicts, throttledMs, checks: 'full' };
  });
}
