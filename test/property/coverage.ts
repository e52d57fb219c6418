/**
 * The branches of the generators a run must exercise: every shape the issue lists, every kind of damage, every way the
 * restore is run. A bounded run that missed one fails (raise its runs or change its seed), so the bounded run is
 * known to reach every branch, not hoped to.
 */
import { prepare, type Case } from './case';

export function branchesOf(c: Case): string[] {
  const s = c.shape;
  const p = prepare(c);
  const out = [
    `root key ${s.rootKey}`,
    `schema name ${s.schema}`,
    ...s.chains.map((n) => `FK path of length ${n}`),
    ...(s.composite ? ['composite keys'] : []),
    ...(s.selfReference ? ['self-reference'] : []),
    ...(s.cycle ? [`${s.cycle.size}-table cycle`, `cycle closed by a ${s.cycle.closedBy} FK`] : []),
    ...(s.junction ? ['junction table'] : []),
    ...(s.sharedLookup ? ['shared lookup table'] : []),
    ...(s.logicalLink ? ['link only in the config'] : []),
    ...(s.uniques ? ['unique constraint and partial unique index'] : []),
    ...(s.identity ? [`identity ${s.identity}`] : []),
    ...(s.generated ? ['generated column'] : []),
    ...(s.partitioned ? ['partitioned table'] : []),
    ...(s.triggers ? ['updated_at trigger'] : []),
    ...(s.nullableFks ? ['nullable FK'] : []),
    ...(s.excluded !== 'none' ? [`excluded table (${s.excluded})`] : []),
    ...(s.deferrableUnique ? ['deferrable unique key'] : []),
    // Tenant 0 of a large case has rows in c0_1 whatever its size.
    ...(c.tenants.some((t, i) => t.size === 0 && t.fate === 'victim' && !(i === 0 && c.large))
      ? ['empty tenant restored']
      : []),
    ...(c.large && c.tenants[0]!.fate === 'victim' ? ['large tenant restored in chunks'] : []),
    ...(emptyUnitInNullableCycle(c, p) ? ['a unit with no row in a cycle closed by a nullable FK'] : []),
    ...(p.partial.length ? ['rows of living tenants deleted'] : []),
    ...(p.partial.length && c.allowPartial ? ['partial tenants restored'] : []),
    ...(p.deleted.some((r) => r.table === 'lookup') ? ['shared parent lost (parent closure)'] : []),
    ...(c.writer.before > 0 ? ['writer before the restore'] : []),
    ...(c.writer.during ? ['writer during the restore'] : []),
    ...(c.run.kills.length ? ['worker killed'] : []),
    ...(c.run.restartPostgres ? ['PostgreSQL restarted'] : []),
    `group size ${c.run.groupSize}`,
    `conflict ${c.run.conflict}`,
    `concurrency ${c.run.concurrency}`,
  ];
  return out;
}

/**
 * A unit (a group of the restore list, or one tenant) none of whose tenants has a row in the tables of a cycle closed
 * by a nullable FK: the copy puts that FK in NULL first and fills it after, with nothing to fill (the shape of the
 * bug fixed in ce3577e).
 */
function emptyUnitInNullableCycle(c: Case, p: ReturnType<typeof prepare>): boolean {
  if (c.shape.cycle?.closedBy !== 'nullable') return false;
  const empty = (tenant: string) => {
    const i = p.data.tenantKeys.indexOf(tenant);
    return c.tenants[i]!.size === 0 && !(i === 0 && c.large);
  };
  const list = p.restoreList;
  return c.run.groupSize === 1 ? list.some(empty) : list.length > 0 && list.every(empty);
}

/** Every branch a bounded run must reach (PostgreSQL restarts only in the chaos mode). */
export const allBranches: string[] = [
  ...['bigint', 'text', 'uuid'].map((k) => `root key ${k}`),
  ...['app', 'Tenant Data', 'x$y'].map((n) => `schema name ${n}`),
  ...[1, 2, 3, 4].map((n) => `FK path of length ${n}`),
  'composite keys',
  'self-reference',
  '2-table cycle',
  '3-table cycle',
  ...['nullable', 'deferrable', 'not-null'].map((k) => `cycle closed by a ${k} FK`),
  'junction table',
  'shared lookup table',
  'link only in the config',
  'unique constraint and partial unique index',
  'identity always',
  'identity by-default',
  'generated column',
  'partitioned table',
  'updated_at trigger',
  'nullable FK',
  'excluded table (leaf)',
  'excluded table (parent)',
  'deferrable unique key',
  'empty tenant restored',
  'large tenant restored in chunks',
  'a unit with no row in a cycle closed by a nullable FK',
  'rows of living tenants deleted',
  'partial tenants restored',
  'shared parent lost (parent closure)',
  'writer before the restore',
  'writer during the restore',
  'worker killed',
  ...[1, 3, 20].map((n) => `group size ${n}`),
  'conflict skip',
  'conflict overwrite',
  'concurrency 1',
  'concurrency 2',
];

export function branchesNotExercised(cases: Case[], required = allBranches): string[] {
  const seen = new Set(cases.flatMap(branchesOf));
  return required.filter((b) => !seen.has(b));
}
