/**
 * The plan cut into units of the chunked copy, the rows a tenant set holds in the backup, and the plan as text for the
 * plan command.
 */
import { escapeIdentifier, inTransaction, type Pool } from '../db';
import type { TenantId } from '../restore-types';
import { describePath, ownedPredicate, setTenantIdsSql } from './ownership';
import { Plan, PlanForeignKey, qualify, renderContext } from './types';

/** The referenced table of an FK, quoted: a plan table, or a table outside the plan (by the name the plan recorded). */
export function fkTarget(plan: Pick<Plan, 'tables'>, fk: PlanForeignKey): string {
  if (plan.tables.some((t) => t.key === fk.to)) return qualify(plan, fk.to);
  if (fk.toSchema !== undefined && fk.toName !== undefined)
    return `${escapeIdentifier(fk.toSchema)}.${escapeIdentifier(fk.toName)}`;
  // A plan of an older version: the key is schema.table as the catalog spells it.
  const dot = fk.to.indexOf('.');
  return `${escapeIdentifier(fk.to.slice(0, dot))}.${escapeIdentifier(fk.to.slice(dot + 1))}`;
}

/**
 * How a chunked copy (no chunk may commit an orphan) goes through the tables: in units of consecutive tables
 * of the order. A table outside FK cycles is a unit of its own. The tables of one FK cycle (a self-reference included)
 * form one unit, because their FKs point forward in the order or into the same table, to rows a later chunk brings:
 * - `chunks`: every such forward or self FK is nullable; the chunks insert those columns NULL (so every committed chunk
 *   satisfies every FK), and once every table of the unit is in, a fill pass sets them from the backup, in chunks
 *   too, each checked before COMMIT.
 * - `one-transaction`: some such FK is NOT NULL (tenants.owner_id -> users, deferred); the unit's tables go in one
 *   transaction per tenant, as an unchunked copy would, whatever chunkRows says.
 */
export interface ChunkUnit {
  /** Index of the unit's first table in plan.tables, and one past its last. */
  start: number;
  end: number;
  mode: 'chunks' | 'one-transaction';
  /** `chunks`: per table, the FK columns inserted NULL and set by the fill pass. */
  deferred: Record<string, string[]>;
  /** `one-transaction`: the FK that prevents chunking. */
  reason?: string;
}

export function chunkUnits(plan: Pick<Plan, 'tables' | 'cycles'>): ChunkUnit[] {
  const index = new Map(plan.tables.map((t, i) => [t.key, i]));
  const units: ChunkUnit[] = [];
  for (let i = 0; i < plan.tables.length;) {
    const cycle = plan.cycles.find((c) => c.tables.includes(plan.tables[i]!.key));
    const end = cycle ? Math.max(...cycle.tables.map((t) => index.get(t) ?? i)) + 1 : i + 1;
    const unit: ChunkUnit = { start: i, end, mode: 'chunks', deferred: {} };
    for (let j = i; j < end; j++) {
      const t = plan.tables[j]!;
      for (const fk of t.foreignKeys) {
        const k = index.get(fk.to);
        if (k === undefined || k < j || k >= end) continue;
        const written = fk.columns.every((c) => t.columns.some((w) => w.name === c));
        if (fk.nullable && written) {
          unit.deferred[t.key] = [...new Set([...(unit.deferred[t.key] ?? []), ...fk.columns])];
        } else if (written && unit.mode === 'chunks') {
          unit.mode = 'one-transaction';
          unit.reason = `${t.key}.${fk.constraint} (${fk.columns.join(', ')}) is NOT NULL and references ${fk.to === t.key ? 'the same table' : `${fk.to}, later in the order`}`;
        }
      }
    }
    if (unit.mode === 'one-transaction') unit.deferred = {};
    units.push(unit);
    i = end;
  }
  return units;
}

/** Exact row counts of the given tenants in the backup, per table (shared tables: the rows restored rows reference). */
export async function estimateRows(scratch: Pool, plan: Plan, tenantIds: TenantId[]): Promise<void> {
  const ctx = renderContext(plan);
  await inTransaction(scratch, async (client) => {
    await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    await client.query(setTenantIdsSql, [tenantIds]);
    for (const t of plan.tables) {
      const { rows } = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${qualify(plan, t.key)} t WHERE ${ownedPredicate(t.key, 't', ctx)}`,
      );
      t.estimatedRows = Number(rows[0]!.n);
    }
  });
}

/** A readable rendering of the plan for `tenant-restore plan`. */
export function describePlan(plan: Plan): string {
  const lines: string[] = [];
  lines.push(`tenant root: ${plan.tenantRoot} (key ${plan.rootKey.column} ${plan.rootKey.type})`);
  lines.push(
    `FK enforcement during copy: ${plan.fkEnforcement === 'replica' ? 'suspended in the tenant transaction (session_replication_role=replica), checked by the engine before COMMIT' : 'by PostgreSQL (user triggers fire)'}`,
  );
  lines.push(`digest: ${plan.digest}`, '', 'restore order (parents first):');
  plan.tables.forEach((t, i) => {
    const est = t.estimatedRows === undefined ? '' : `  ~${t.estimatedRows} rows`;
    lines.push(`  ${String(i + 1).padStart(2)}. ${t.key} [${t.role}]${est}`);
    if (t.role === 'owned') for (const p of t.paths) lines.push(`        via ${describePath(p)}`);
    if (t.role === 'shared') {
      const via = plan.closureEdges.filter((e) => e.to === t.key).map((e) => `${e.from}(${e.columns.join(',')})`);
      lines.push(`        parent closure: rows referenced by ${via.join(', ')}`);
    }
  });
  lines.push('', 'cycles:');
  if (!plan.cycles.length) lines.push('  none');
  for (const c of plan.cycles) {
    lines.push(`  ${c.tables.join(' <-> ')}`);
    for (const e of c.edges)
      lines.push(`    ${e.from}.${e.constraint} (${e.columns.join(', ')}) -> ${e.to}: ${e.strategy}`);
  }
  lines.push('', 'schema drift:');
  if (!plan.drift.tables.length && !plan.drift.onlyInBackup.length && !plan.drift.onlyInLive.length)
    lines.push('  none');
  for (const d of plan.drift.tables) {
    if (d.defaulted.length) lines.push(`  ${d.table}: only in live, get their default: ${d.defaulted.join(', ')}`);
    if (d.dropped.length) lines.push(`  ${d.table}: only in backup, not restored: ${d.dropped.join(', ')}`);
    for (const r of d.retyped) lines.push(`  ${d.table}.${r.column}: ${r.backup} -> ${r.live} (cast)`);
  }
  if (plan.drift.onlyInBackup.length) lines.push(`  tables only in backup: ${plan.drift.onlyInBackup.join(', ')}`);
  if (plan.drift.onlyInLive.length) lines.push(`  tables only in live: ${plan.drift.onlyInLive.join(', ')}`);
  const fks = plan.tables.flatMap((t) => t.foreignKeys);
  const outside = fks.filter((f) => !plan.tables.some((t) => t.key === f.to)).length;
  lines.push('', 'foreign keys of restored rows:');
  lines.push(
    `  ${fks.length} constraint(s) of live (${outside} referencing tables outside the plan), all checked before COMMIT by ${plan.fkEnforcement === 'replica' ? "the engine's orphan scan" : 'PostgreSQL'}`,
  );
  lines.push('', 'chunked copy (a tenant with more than chunkRows rows in a table):');
  for (const u of chunkUnits(plan)) {
    const names = plan.tables
      .slice(u.start, u.end)
      .map((t) => t.key)
      .join(', ');
    if (u.mode === 'one-transaction') lines.push(`  ${names}: one transaction per tenant, not chunked (${u.reason})`);
    else if (Object.keys(u.deferred).length)
      lines.push(
        `  ${names}: chunks; ${Object.entries(u.deferred)
          .map(([t, c]) => `${t}(${c.join(', ')})`)
          .join(', ')} inserted NULL, then set once the unit's rows are in`,
      );
  }
  if (plan.warnings.length) lines.push('', 'warnings:', ...plan.warnings.map((w) => `  ${w}`));
  return lines.join('\n');
}
