/** The issue-tracker fixture's incident and its per-tenant filters, written independently of the engine. */

/** Rows of a tenant set, per table, written independently of the engine's own ownership predicates. */
export function tenantFilter(ids: number[]): (table: string) => string | null {
  const list = `ARRAY[${ids.join(',')}]::bigint[]`;
  const projects = `SELECT id FROM app.projects WHERE tenant_id = ANY(${list})`;
  const issues = `SELECT id FROM app.issues WHERE project_id IN (${projects})`;
  const comments = `SELECT id FROM app.comments WHERE issue_id IN (${issues})`;
  const filters: Record<string, string> = {
    'app.tenants': `t.id = ANY(${list})`,
    'app.users': `t.tenant_id = ANY(${list})`,
    'app.projects': `t.tenant_id = ANY(${list})`,
    'app.issues': `t.project_id IN (${projects})`,
    'app.comments': `t.issue_id IN (${issues})`,
    'app.attachments': `t.comment_id IN (${comments})`,
    'app.labels': `t.tenant_id = ANY(${list})`,
    'app.issue_labels': `t.tenant_id = ANY(${list})`,
  };
  return (table) => filters[table] ?? null;
}
export const tenantTables = [
  'app.tenants',
  'app.users',
  'app.projects',
  'app.issues',
  'app.comments',
  'app.attachments',
  'app.labels',
  'app.issue_labels',
];

/** The incident: a script hard-deletes tenants, children first, and a plan nobody else uses. Not product code. */
export function deleteTenantsSql(ids: number[]): string {
  const list = `ARRAY[${ids.join(',')}]::bigint[]`;
  return `BEGIN;
    SET CONSTRAINTS ALL DEFERRED;
    DELETE FROM app.attachments WHERE comment_id IN (SELECT c.id FROM app.comments c JOIN app.issues i ON i.id = c.issue_id JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = ANY(${list}));
    DELETE FROM app.comments WHERE issue_id IN (SELECT i.id FROM app.issues i JOIN app.projects p ON p.id = i.project_id WHERE p.tenant_id = ANY(${list}));
    DELETE FROM app.issue_labels WHERE tenant_id = ANY(${list});
    UPDATE app.projects SET lead_issue_id = NULL WHERE tenant_id = ANY(${list});
    DELETE FROM app.issues WHERE project_id IN (SELECT id FROM app.projects WHERE tenant_id = ANY(${list}));
    DELETE FROM app.projects WHERE tenant_id = ANY(${list});
    DELETE FROM app.labels WHERE tenant_id = ANY(${list});
    DELETE FROM app.users WHERE tenant_id = ANY(${list});
    DELETE FROM app.tenants WHERE id = ANY(${list});
    DELETE FROM app.plans WHERE NOT EXISTS (SELECT 1 FROM app.tenants t WHERE t.plan_id = plans.id);
    COMMIT;`;
}
