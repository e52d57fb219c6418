/**
 * Which rows belong to a tenant. A table is owned when it reaches the tenant root by following FKs from child to
 * parent (the downward closure of the root); every simple FK path to the root is kept, and a row belongs to a tenant
 * when ANY of its paths reaches that tenant's root key (a rental of one store's customer at another store's inventory
 * belongs to both). Tables that cannot reach the root are shared. Shared ancestors of owned tables are the parent
 * closure: rows of theirs that restored rows reference may be missing in live and are then restored too.
 *
 * The SQL rendered here is an expression over a row alias; tenant ids are never inlined: they come from the session
 * setting `tenant_restore.tenant_ids`, set with a `$1` parameter (COPY cannot take parameters, a setting can).
 */
import { escapeIdentifier, escapeLiteral } from '../db';
import { compareText, type CatalogForeignKey } from './catalog';

/** An FK that ownership follows from child (`from`) to parent (`to`): a catalog FK, or a logical one of the config. */
export type OwnershipEdge = Pick<CatalogForeignKey, 'name' | 'from' | 'columns' | 'to' | 'referencedColumns'>;

/** One FK step of an ownership path, named by its constraint. */
export type PathStep = Omit<OwnershipEdge, 'name'> & { constraint: string };

/** FK steps from a table up to the root; empty for the root itself. */
export type OwnershipPath = PathStep[];

/** A safety net for pathological schemas: beyond this many paths per table the shortest ones are kept (and reported). */
export const maxPathsPerTable = 32;

export function ownedTables(root: string, edges: OwnershipEdge[]): Set<string> {
  const owned = new Set([root]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const e of edges) {
      if (owned.has(e.to) && !owned.has(e.from)) {
        owned.add(e.from);
        grew = true;
      }
    }
  }
  return owned;
}

/** Every simple path (no table twice) from each owned table up to the root, shortest first. */
export function ownershipPaths(
  root: string,
  edges: OwnershipEdge[],
): { paths: Record<string, OwnershipPath[]>; truncated: string[] } {
  const owned = ownedTables(root, edges);
  const up = new Map<string, OwnershipEdge[]>();
  for (const e of edges) {
    if (!owned.has(e.from) || !owned.has(e.to) || e.from === e.to || e.from === root) continue;
    (up.get(e.from) ?? up.set(e.from, []).get(e.from)!).push(e);
  }
  const paths: Record<string, OwnershipPath[]> = {};
  const truncated: string[] = [];
  for (const table of [...owned].sort(compareText)) {
    if (table === root) {
      paths[table] = [[]];
      continue;
    }
    const found: OwnershipPath[] = [];
    // Breadth first, so that when a table has too many paths the shortest (most selective) are the ones kept.
    let frontier: Array<{ at: string; path: OwnershipPath; seen: Set<string> }> = [
      { at: table, path: [], seen: new Set([table]) },
    ];
    while (frontier.length && found.length < maxPathsPerTable) {
      const next: typeof frontier = [];
      for (const f of frontier) {
        for (const e of up.get(f.at) ?? []) {
          if (f.seen.has(e.to)) continue;
          const step: PathStep = {
            constraint: e.name,
            from: e.from,
            columns: e.columns,
            to: e.to,
            referencedColumns: e.referencedColumns,
          };
          if (e.to === root) found.push([...f.path, step]);
          else next.push({ at: e.to, path: [...f.path, step], seen: new Set([...f.seen, e.to]) });
        }
      }
      frontier = next;
    }
    if (found.length > maxPathsPerTable) truncated.push(table);
    paths[table] = found.slice(0, maxPathsPerTable);
  }
  return { paths, truncated };
}

/** Tables that owned tables reference, directly or through other shared tables, and that are not owned themselves. */
export function sharedAncestors(owned: Set<string>, edges: OwnershipEdge[]): string[] {
  const needed = new Set<string>();
  const frontier = [...owned];
  while (frontier.length) {
    const t = frontier.pop()!;
    for (const e of edges) {
      if (e.from === t && !owned.has(e.to) && !needed.has(e.to)) {
        needed.add(e.to);
        frontier.push(e.to);
      }
    }
  }
  return [...needed].sort(compareText);
}

export function describePath(path: OwnershipPath): string {
  if (path.length === 0) return '(tenant root)';
  return [path[0]!.from, ...path.map((s) => `-[${s.columns.join(',')}]-> ${s.to}`)].join(' ');
}

// ---- SQL rendering -------------------------------------------------------------------------------------------------

export interface RenderContext {
  /** `schema.table` key -> quoted `"schema"."table"`. */
  qualify: (key: string) => string;
  root: string;
  rootKey: string;
  /** The root key's SQL type, e.g. `integer`, `uuid`. */
  rootKeyType: string;
  /** Per table key: ownership paths (owned tables) and the edges through which shared parents are referenced. */
  paths: Record<string, OwnershipPath[]>;
  /** Edges child -> shared parent among plan tables, for the parent closure. */
  closureEdges: PathStep[];
  /** Whether a column of a table leads an index (unknown tables and plans of earlier releases: true). */
  indexed?: (table: string, column: string) => boolean;
  /**
   * The tenants of the statement, when known: rendered as a constant array, so that the planner sees how many there
   * are. Without them, SQL reads the session setting, whose size the planner cannot know: it guessed, and chose a
   * parallel sequential scan of app.users for 20 tenants (100 ms, two CPUs) where the index takes 1 ms.
   */
  tenantIds?: string[];
}

export const tenantIdsSetting = 'tenant_restore.tenant_ids';

/** SQL that sets the tenant ids for the current transaction; `$1` is a text[] of ids. */
export const setTenantIdsSql = `SELECT set_config('${tenantIdsSetting}', $1::text[]::text, true)`;

export function tenantIdsExpr(ctx: RenderContext): string {
  if (ctx.tenantIds) {
    // An array literal: each id double-quoted (backslash and quote escaped), the whole a SQL string literal.
    const elements = ctx.tenantIds.map((id) => `"${id.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(',');
    return `${escapeLiteral(`{${elements}}`)}::${ctx.rootKeyType}[]`;
  }
  return `current_setting('${tenantIdsSetting}')::${ctx.rootKeyType}[]`;
}

const q = escapeIdentifier;

function pathCondition(
  path: OwnershipPath,
  alias: string,
  ctx: RenderContext,
  n: number,
  test: (expr: string) => string,
): string {
  if (path.length === 0) return test(`${alias}.${q(ctx.rootKey)}`);
  const last = path[path.length - 1]!;
  // When the last FK references the root key itself, the root row need not be joined: its key is in the FK column.
  const direct = last.referencedColumns.length === 1 && last.referencedColumns[0] === ctx.rootKey;
  const joined = direct ? path.slice(0, -1) : path;
  if (joined.length === 0) return test(`${alias}.${q(last.columns[0]!)}`);
  const from: string[] = [];
  const where: string[] = [];
  let prev: string | null = null;
  joined.forEach((step, i) => {
    const a = `${alias}_${n}_${i}`;
    from.push(`${ctx.qualify(step.to)} ${a}`);
    if (prev) step.columns.forEach((c, k) => where.push(`${a}.${q(step.referencedColumns[k]!)} = ${prev}.${q(c)}`));
    prev = a;
  });
  where.push(test(direct ? `${prev}.${q(last.columns[0]!)}` : `${prev}.${q(ctx.rootKey)}`));
  const first = joined[0]!;
  const head = `${alias}_${n}_0`;
  // Correlated EXISTS for the other-owner test: it only ever filters a few rows (joined to a tenant's staging rows, or
  // one conflicting row in ON CONFLICT), where an uncorrelated key set would hash the keys of every other tenant
  // (measured: ~250 ms per table and query against 1.4M comments). EXISTS is never NULL, so it is safe under NOT.
  const correlation = first.columns.map((c, k) => `${head}.${q(first.referencedColumns[k]!)} = ${alias}.${q(c)}`);
  return `EXISTS (SELECT 1 FROM ${from.join(', ')} WHERE ${[...correlation, ...where].join(' AND ')})`;
}

/** True for rows of `table` (as `alias`) that belong to at least one tenant of the current set. */
export function ownedPredicate(table: string, alias: string, ctx: RenderContext): string {
  const paths = ctx.paths[table];
  if (!paths) return sharedPredicate(table, alias, ctx, new Set());
  // Only ever used positively (WHERE owned), so NULL may stand for false and the indexable form applies.
  return `(${ownedByPaths(paths, alias, ctx)})`;
}

/**
 * The paths of a table as a tree: paths that begin with the same FK share one key set of the parent, and below it the
 * parent's remaining paths are factored the same way. Each key set is an uncorrelated `ARRAY(SELECT ...)` (an InitPlan,
 * computed once per statement) matched through the FK column's index, so every table on the way to the root is read
 * once per statement, whatever the number of paths through it. Rendering each path on its own read the deep tables
 * once per path: 5 paths of app.attachments built 5 arrays of the same 15,000 comment ids and probed the index with
 * each (measured on the bench data, 20 tenants: 320 ms for one count).
 */
function ownedByPaths(paths: OwnershipPath[], alias: string, ctx: RenderContext): string {
  const ids = tenantIdsExpr(ctx);
  const parts: string[] = [];
  if (paths.some((p) => p.length === 0)) parts.push(`${alias}.${q(ctx.rootKey)} = ANY(${ids})`);
  const byFirstStep = new Map<string, OwnershipPath[]>();
  for (const p of paths)
    if (p.length) byFirstStep.set(p[0]!.constraint, [...(byFirstStep.get(p[0]!.constraint) ?? []), p]);
  [...byFirstStep.values()].forEach((group, i) => {
    const step = group[0]![0]!;
    const own = step.columns.map((c) => `${alias}.${q(c)}`);
    // An indexed column is probed with the key set as an array (an InitPlan, then index lookups). On a column without
    // an index that form scans the table and searches the array linearly for every row (measured: 22-91 ms per
    // evaluation on the bench's unindexed FK columns); `IN` hashes the key set instead (~1 ms there).
    const indexed = own.length === 1 && (ctx.indexed?.(step.from, step.columns[0]!) ?? true);
    const match = (keySet: string) =>
      indexed ? `${own[0]} = ANY(ARRAY(${keySet}))` : `(${own.join(', ')}) IN (${keySet})`;
    if (step.to === ctx.root) {
      // The FK references the root key itself: the tenant id is in the FK column, no need to read the root.
      if (step.referencedColumns.length === 1 && step.referencedColumns[0] === ctx.rootKey)
        parts.push(`${own[0]} = ANY(${ids})`);
      else {
        const r = `${alias}_${i}`;
        parts.push(
          match(
            `SELECT ${step.referencedColumns.map((c) => `${r}.${q(c)}`).join(', ')} FROM ${ctx.qualify(step.to)} ${r} WHERE ${r}.${q(ctx.rootKey)} = ANY(${ids})`,
          ),
        );
      }
      return;
    }
    const parent = `${alias}_${i}`;
    const inner = ownedByPaths(
      group.map((p) => p.slice(1)),
      parent,
      ctx,
    );
    parts.push(
      match(
        `SELECT ${step.referencedColumns.map((c) => `${parent}.${q(c)}`).join(', ')} FROM ${ctx.qualify(step.to)} ${parent} WHERE ${inner}`,
      ),
    );
  });
  return parts.length === 1 ? parts[0]! : `(${parts.join(' OR ')})`;
}

/** True for rows of an owned `table` that belong to some tenant outside the current set (evaluated in live). */
export function otherOwnerPredicate(table: string, alias: string, ctx: RenderContext): string {
  const paths = ctx.paths[table] ?? [];
  const ids = tenantIdsExpr(ctx);
  if (!paths.length) return 'false';
  // Used under NOT as well (the overwrite filter), so each path must be NULL-safe.
  return `(${paths.map((p, i) => pathCondition(p, alias, ctx, i, (e) => `${e} <> ALL(${ids})`)).join(' OR ')})`;
}

/** True for rows of a shared `table` that restored rows reference, directly or through other shared rows. */
export function sharedPredicate(table: string, alias: string, ctx: RenderContext, visiting: Set<string>): string {
  const inbound = ctx.closureEdges.filter((e) => e.to === table && e.from !== table && !visiting.has(e.from));
  if (!inbound.length) return 'false';
  const inner = new Set([...visiting, table]);
  const parts = inbound.map((e, i) => {
    const c = `${alias}_c${i}`;
    const childPredicate = ctx.paths[e.from] ? ownedPredicate(e.from, c, ctx) : sharedPredicate(e.from, c, ctx, inner);
    const notNull = e.columns.map((col) => `${c}.${q(col)} IS NOT NULL`).join(' AND ');
    return `(${e.referencedColumns.map((r) => `${alias}.${q(r)}`).join(', ')}) IN (SELECT ${e.columns.map((col) => `${c}.${q(col)}`).join(', ')} FROM ${ctx.qualify(e.from)} ${c} WHERE ${notNull} AND ${childPredicate})`;
  });
  return `(${parts.join(' OR ')})`;
}
