/**
 * What the workload scripts know about their own schema (schema.sql): every tenant-owned table, how its rows reach
 * the tenant, and the key that identifies a row. This is the workload's knowledge, written by hand for checksums,
 * the incident and the writer. The product does not use it: it derives all of this from the catalog.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const workloadSchema = 'app';
export const tenantRoot = 'app.tenants';

export interface WorkloadTable {
  /** `app.<name>` */
  table: string;
  /** FROM clause; the table's own alias is always `x`. */
  from: string;
  /** SQL expression giving the owning tenant of row `x`. */
  tenant: string;
  /** SQL expression giving the row's key as text. */
  key: string;
}

const via = {
  project: 'JOIN app.projects p ON p.id = x.project_id',
  issue: 'JOIN app.issues i ON i.id = x.issue_id JOIN app.projects p ON p.id = i.project_id',
  comment:
    'JOIN app.comments c ON c.id = x.comment_id JOIN app.issues i ON i.id = c.issue_id JOIN app.projects p ON p.id = i.project_id',
};

/** Tenant-owned tables, parents first (FK order). Deleting goes the other way. */
export const ownedTables: WorkloadTable[] = [
  { table: 'app.tenants', from: 'app.tenants x', tenant: 'x.id', key: 'x.id::text' },
  { table: 'app.users', from: 'app.users x', tenant: 'x.tenant_id', key: 'x.id::text' },
  { table: 'app.billing_accounts', from: 'app.billing_accounts x', tenant: 'x.tenant_id', key: 'x.id::text' },
  { table: 'app.app_installations', from: 'app.app_installations x', tenant: 'x.tenant_id', key: 'x.id::text' },
  { table: 'app.api_keys', from: 'app.api_keys x', tenant: 'x.tenant_id', key: 'x.id::text' },
  { table: 'app.projects', from: 'app.projects x', tenant: 'x.tenant_id', key: 'x.id::text' },
  { table: 'app.labels', from: 'app.labels x', tenant: 'x.tenant_id', key: 'x.id::text' },
  { table: 'app.issues', from: `app.issues x ${via.project}`, tenant: 'p.tenant_id', key: 'x.id::text' },
  {
    table: 'app.issue_labels',
    from: `app.issue_labels x ${via.issue}`,
    tenant: 'p.tenant_id',
    key: "x.issue_id::text || ':' || x.label_id::text",
  },
  { table: 'app.comments', from: `app.comments x ${via.issue}`, tenant: 'p.tenant_id', key: 'x.id::text' },
  { table: 'app.attachments', from: `app.attachments x ${via.comment}`, tenant: 'p.tenant_id', key: 'x.id::text' },
];

export const sharedTables = ['app.plans', 'app.countries'];

/** The two sections of schema.sql: `pre-data` (tables) and `post-data` (constraints, indexes, triggers). */
export function schemaSections(): { preData: string; postData: string } {
  const text = readFileSync(join(__dirname, 'schema.sql'), 'utf8');
  const [, afterPre] = text.split('-- @section pre-data');
  const [preData, postData] = afterPre.split('-- @section post-data');
  return { preData, postData };
}

/** A tenant id list as a bigint[] parameter. */
export function tenantArray(ids: Iterable<string | number | bigint>): string[] {
  return [...ids].map((id) => String(id));
}
