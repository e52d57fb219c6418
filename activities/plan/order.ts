/**
 * Restore order: strongly connected components (Tarjan), a strategy to break each FK cycle, then a topological
 * order with parents first. Pure functions over plain data, deterministic (ties are broken by table name).
 *
 * Cycle strategies, per FK edge inside a component, in order of preference:
 * - logical: a config FK is not enforced by PostgreSQL, so it never blocks an insert.
 * - defer: a DEFERRABLE constraint is checked at COMMIT (`SET CONSTRAINTS ALL DEFERRED`).
 * - single-statement: a self-reference; all rows of the table go in with one INSERT, and a non-deferrable FK is
 *   checked at the end of the statement, so a child may precede its parent inside that statement.
 * - null-then-update: every referencing column is nullable; insert NULL, then UPDATE from staging once every table
 *   of the tenant is in.
 * - unchecked: none of the above; only possible when FK triggers are suspended inside the tenant's transaction
 *   (`session_replication_role = replica`), and then the orphan scan before COMMIT checks the edge instead.
 * Otherwise the cycle cannot be restored: UnbreakableCycleError names it.
 */
import { UnbreakableCycleError } from '../errors';
import { compareText } from './catalog';

export interface OrderEdge {
  name: string;
  from: string;
  to: string;
  columns: string[];
  deferrable: boolean;
  nullable: boolean;
  logical: boolean;
}

export type CycleStrategy = 'logical' | 'defer' | 'single-statement' | 'null-then-update' | 'unchecked';

export interface CycleEdge {
  constraint: string;
  from: string;
  to: string;
  columns: string[];
  strategy: CycleStrategy;
}

export interface PlanCycle {
  tables: string[];
  /** The edges that had to be broken; the other edges inside the component are respected by the order. */
  edges: CycleEdge[];
}

/** Tarjan's algorithm, iterative (deep schemas must not overflow the stack). Components come out parents first. */
export function stronglyConnectedComponents(nodes: string[], edges: Array<{ from: string; to: string }>): string[][] {
  const sorted = [...nodes].sort(compareText);
  const adjacency = new Map<string, string[]>(sorted.map((n) => [n, []]));
  for (const e of edges) if (adjacency.has(e.from) && adjacency.has(e.to)) adjacency.get(e.from)!.push(e.to);
  for (const list of adjacency.values()) list.sort(compareText);

  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  for (const start of sorted) {
    if (index.has(start)) continue;
    const work: Array<{ node: string; next: number }> = [{ node: start, next: 0 }];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length) {
      const frame = work[work.length - 1]!;
      const neighbours = adjacency.get(frame.node)!;
      if (frame.next < neighbours.length) {
        const w = neighbours[frame.next++]!;
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push({ node: w, next: 0 });
        } else if (onStack.has(w)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
        } while (w !== frame.node);
        components.push(component.sort(compareText));
      }
    }
  }
  return components;
}

/** Kahn's algorithm with the smallest name first among the ready nodes; returns null when the edges have a cycle. */
function topological(nodes: string[], edges: Array<{ from: string; to: string }>): string[] | null {
  // Parents first: an edge child -> parent means the parent must come before the child.
  const pending = new Map<string, number>(nodes.map((n) => [n, 0]));
  const children = new Map<string, string[]>(nodes.map((n) => [n, []]));
  for (const e of edges) {
    if (!pending.has(e.from) || !pending.has(e.to) || e.from === e.to) continue;
    pending.set(e.from, pending.get(e.from)! + 1);
    children.get(e.to)!.push(e.from);
  }
  const ready = nodes.filter((n) => pending.get(n) === 0).sort(compareText);
  const order: string[] = [];
  while (ready.length) {
    const n = ready.shift()!;
    order.push(n);
    for (const c of children.get(n)!) {
      const left = pending.get(c)! - 1;
      pending.set(c, left);
      if (left === 0) {
        ready.push(c);
        ready.sort(compareText);
      }
    }
  }
  return order.length === nodes.length ? order : null;
}

function describeCycle(tables: string[], edges: OrderEdge[]): string {
  return `${tables.join(' <-> ')} (constraints: ${edges.map((e) => `${e.from}.${e.name} (${e.columns.join(', ')}) -> ${e.to}`).join('; ')})`;
}

export function orderTables(input: { tables: string[]; edges: OrderEdge[]; canSuspendFkChecks: boolean }): {
  order: string[];
  cycles: PlanCycle[];
} {
  const { tables, edges, canSuspendFkChecks } = input;
  const components = stronglyConnectedComponents(tables, edges);
  const componentOf = new Map<string, number>();
  components.forEach((c, i) => c.forEach((t) => componentOf.set(t, i)));

  const cycles: PlanCycle[] = [];
  const innerOrder = new Map<number, string[]>();
  components.forEach((component, i) => {
    const inner = edges.filter((e) => componentOf.get(e.from) === i && componentOf.get(e.to) === i);
    if (inner.length === 0) {
      innerOrder.set(i, component);
      return;
    }
    const broken = new Map<OrderEdge, CycleStrategy>();
    const kept = () => inner.filter((e) => !broken.has(e) && e.from !== e.to);
    for (const e of inner) {
      if (e.logical) broken.set(e, 'logical');
      else if (e.deferrable) broken.set(e, 'defer');
      else if (e.from === e.to) broken.set(e, 'single-statement');
    }
    // Break as few nullable FKs as needed: each costs an UPDATE of the restored rows.
    for (const e of inner) {
      if (topological(component, kept())) break;
      if (!broken.has(e) && e.nullable) broken.set(e, 'null-then-update');
    }
    let order = topological(component, kept());
    if (!order) {
      const rest = kept();
      if (!canSuspendFkChecks) {
        const stuck = stronglyConnectedComponents(component, rest).find((c) => c.length > 1)!;
        const stuckEdges = rest.filter((e) => stuck.includes(e.from) && stuck.includes(e.to));
        throw new UnbreakableCycleError(
          `The FK cycle ${describeCycle(stuck, stuckEdges)} cannot be restored: no constraint in it is DEFERRABLE and no FK column is nullable, ` +
            `and this database role may not suspend FK checks inside the restore transaction. Either grant it that ` +
            `(as a superuser: GRANT SET ON PARAMETER session_replication_role TO <restore role>), or make one of the constraints ` +
            `DEFERRABLE (ALTER TABLE ... ALTER CONSTRAINT ... DEFERRABLE), then plan again.`,
          { tables: stuck, constraints: stuckEdges.map((e) => e.name) },
        );
      }
      for (const e of rest) broken.set(e, 'unchecked');
      order = topological(component, kept())!;
    }
    innerOrder.set(i, order);
    cycles.push({
      tables: component,
      edges: inner
        .filter((e) => broken.has(e))
        .map((e) => ({ constraint: e.name, from: e.from, to: e.to, columns: e.columns, strategy: broken.get(e)! })),
    });
  });

  // Order the components (a DAG), then expand each one with its inner order.
  const names = components.map((c) => c[0]!);
  const dagEdges = edges
    .filter((e) => componentOf.get(e.from) !== componentOf.get(e.to))
    .map((e) => ({ from: names[componentOf.get(e.from)!]!, to: names[componentOf.get(e.to)!]! }));
  const componentOrder = topological(names, dagEdges)!;
  const order = componentOrder.flatMap((n) => innerOrder.get(componentOf.get(n)!)!);
  return { order, cycles: cycles.sort((a, b) => compareText(a.tables[0]!, b.tables[0]!)) };
}
