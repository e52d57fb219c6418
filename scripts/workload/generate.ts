/**
 * Fills the workload schema (schema.sql) fast: one set-based INSERT ... SELECT over generate_series per table, with
 * constraints and indexes added afterwards, as pg_restore does. A million rows take seconds.
 *
 * Deterministic for a seed: every "random" value is a hash of (row number, seed, salt) via hashint8extended, so the
 * result does not depend on row order, parallel plans or the session's random() state. Ids are assigned from
 * per-tenant offsets, so the same seed gives the same ids.
 *
 * Tenant sizes are skewed (Pareto, alpha 1.4, capped): most tenants are small, a few are 50-100x the median.
 */
import { connect, escapeIdentifier, type Client, type Pool, type PoolClient } from '../../activities/db';
import { ownedTables, schemaSections, sharedTables } from './model';

export interface GenerateOptions {
  /** Number of tenants (ids 100001 ...). */
  tenants: number;
  /** Approximate total row count over all tables. */
  rowsTarget: number;
  /** Same seed, same data. */
  seed?: number;
  /** Drop an existing `app` schema first. */
  replace?: boolean;
  onProgress?: (message: string) => void;
}

export interface GenerateResult {
  tenants: number;
  rows: Record<string, number>;
  totalRows: number;
  durationMs: number;
  /** Tenant ids, ascending. */
  tenantIds: string[];
  /** The largest tenants and their row counts in issues (the bulk of a tenant). */
  largestTenants: Array<{ tenantId: string; issues: number }>;
}

/** First tenant id is 100001: ids look like production ids, and 1..N stay free for other tests. */
export const firstTenantId = 100001;

/** Rows per issue, summed over the tables that scale with issues (see the per-table comments below). */
const rowsPerIssue =
  1 /* issue */ +
  1.5 /* issue_labels */ +
  2.5 /* comments */ +
  0.625 /* attachments */ +
  0.15 /* users */ +
  0.025 /* projects */ +
  0.05; /* api_keys */
/** Rows per tenant that do not scale: tenant, billing account, ~10 labels, ~4.5 app installations. */
const fixedRowsPerTenant = 1 + 1 + 10 + 4.5;

async function withClient<T>(target: string | Pool, fn: (client: Client | PoolClient) => Promise<T>): Promise<T> {
  if (typeof target === 'string') {
    const client = await connect(target, 'workload-generate');
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  }
  const client = await target.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

export async function generateWorkload(target: string | Pool, options: GenerateOptions): Promise<GenerateResult> {
  const { tenants, rowsTarget } = options;
  const seed = options.seed ?? 42;
  if (!Number.isInteger(tenants) || tenants < 1) throw new Error(`tenants must be a positive integer, got ${tenants}`);
  if (!Number.isInteger(seed) || seed < 0 || seed > 1_000_000)
    throw new Error(`seed must be an integer in 0..1000000, got ${seed}`);
  const say = options.onProgress ?? (() => undefined);
  const issuesTotal = Math.max(tenants * 5, Math.round((rowsTarget - fixedRowsPerTenant * tenants) / rowsPerIssue));
  const started = Date.now();

  /** A uniform number in [0, 1) from a row number and a salt; the seed is a validated integer literal. */
  const rnd = (expr: string, salt: number) =>
    `((hashint8extended((${expr})::bigint, ${seed * 1000 + salt}) & 2147483647)::float8 / 2147483648.0)`;
  /** A deterministic uuid. */
  const uuid = (kind: string, expr: string) => `md5('${seed}:${kind}:' || (${expr})::text)::uuid`;
  const epoch = "timestamptz '2023-01-01 00:00:00+00'";

  return withClient(target, async (client) => {
    const timed = async (label: string, sql: string, values?: unknown[]) => {
      const t0 = Date.now();
      const result = await client.query(sql, values);
      say(`${label} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      return result;
    };
    // Parallel workers would not change results (hash-based values), but on a small box they only add overhead.
    await client.query(
      "SET max_parallel_workers_per_gather = 0; SET work_mem = '64MB'; SET maintenance_work_mem = '256MB'",
    );
    if (options.replace) await client.query('DROP SCHEMA IF EXISTS app CASCADE');
    const { preData, postData } = schemaSections();
    await client.query(preData);

    await client.query(`
      INSERT INTO app.plans (id, code, name, monthly_price_cents, features) VALUES
        (1, 'free', 'Free', 0, '{"seats": 5, "sso": false}'),
        (2, 'team', 'Team', 2900, '{"seats": 50, "sso": false}'),
        (3, 'business', 'Business', 9900, '{"seats": 500, "sso": true}'),
        (4, 'enterprise', 'Enterprise', 49900, '{"seats": null, "sso": true, "audit": true}');
      INSERT INTO app.countries (code, name) VALUES
        ('US', 'United States'), ('DE', 'Germany'), ('FR', 'France'), ('GB', 'United Kingdom'), ('JP', 'Japan'),
        ('BR', 'Brazil'), ('IN', 'India'), ('CA', 'Canada'), ('AU', 'Australia'), ('NL', 'Netherlands'),
        ('SE', 'Sweden'), ('ES', 'Spain'), ('IT', 'Italy'), ('PL', 'Poland'), ('MX', 'Mexico'), ('KR', 'South Korea');`);

    // One row per tenant with its size and the first id of each of its ranges (running sums), so that every table
    // below is one INSERT ... SELECT with no lookups.
    await timed(
      'sized tenants',
      `
      CREATE TEMP TABLE gen_t ON COMMIT PRESERVE ROWS AS
      WITH w AS (
        SELECT n, ${firstTenantId - 1} + n AS tenant_id, least(200.0, power(1.0 - ${rnd('n', 1)}, -1.0 / 1.4)) AS w
        FROM generate_series(1, ${tenants}) n
      ), s AS (
        SELECT *, greatest(5, round(${issuesTotal} * w / sum(w) OVER ()))::int AS issues_n FROM w
      ), c AS (
        SELECT *,
          greatest(2, round(issues_n * 0.15))::int AS users_n,
          greatest(1, round(issues_n / 40.0))::int AS projects_n,
          (8 + n % 5)::int AS labels_n,
          (2 + floor(${rnd('n', 2)} * 6))::int AS apps_n
        FROM s
      )
      SELECT *,
        greatest(1, users_n / 3)::int AS keys_n,
        (sum(users_n) OVER (ORDER BY n) - users_n)::bigint AS users_off,
        (sum(projects_n) OVER (ORDER BY n) - projects_n)::bigint AS projects_off,
        (sum(labels_n) OVER (ORDER BY n) - labels_n)::bigint AS labels_off,
        (sum(issues_n) OVER (ORDER BY n) - issues_n)::bigint AS issues_off,
        (sum(apps_n) OVER (ORDER BY n) - apps_n)::bigint AS apps_off
      FROM c`,
    );
    await client.query('CREATE UNIQUE INDEX ON gen_t (n); ANALYZE gen_t');

    const steps: Array<[string, string]> = [
      [
        'app.tenants',
        `
        INSERT INTO app.tenants (id, slug, name, plan_id, country_code, settings, created_at, updated_at)
        SELECT tenant_id, 'tenant-' || tenant_id, 'Tenant ' || tenant_id,
          CASE WHEN issues_n > 2000 THEN 4 WHEN issues_n > 600 THEN 3 WHEN issues_n > 150 THEN 2 ELSE 1 END,
          (ARRAY['US','DE','FR','GB','JP','BR','IN','CA','AU','NL','SE','ES','IT','PL','MX','KR'])[1 + floor(${rnd('n', 3)} * 16)::int],
          jsonb_build_object('timezone', 'UTC', 'locale', 'en', 'features', jsonb_build_array('issues', 'boards')),
          ${epoch} + n * interval '1 hour', ${epoch} + n * interval '1 hour'
        FROM gen_t`,
      ],
      // users: 0.15 per issue
      [
        'app.users',
        `
        INSERT INTO app.users (id, tenant_id, external_id, email, display_name, role, profile, created_at, updated_at)
        SELECT users_off + g, tenant_id, ${uuid('user', 'users_off + g')},
          'user' || g || '@tenant-' || tenant_id || '.example', 'User ' || g,
          CASE WHEN g = 1 THEN 'admin' ELSE 'member' END,
          jsonb_build_object('theme', CASE WHEN g % 3 = 0 THEN 'dark' ELSE 'light' END, 'notifications', g % 2 = 0),
          ${epoch} + n * interval '1 hour' + g * interval '1 minute', ${epoch} + n * interval '1 hour' + g * interval '1 minute'
        FROM gen_t, generate_series(1, users_n) g`,
      ],
      [
        'app.billing_accounts',
        `
        INSERT INTO app.billing_accounts (id, tenant_id, plan_id, country_code, active, billing_email, balance_cents, created_at, updated_at)
        SELECT n, t.tenant_id, x.plan_id, x.country_code, true, 'billing@tenant-' || t.tenant_id || '.example',
          floor(${rnd('n', 4)} * 100000)::bigint, x.created_at, x.created_at
        FROM gen_t t JOIN app.tenants x ON x.id = t.tenant_id`,
      ],
      [
        'app.app_installations',
        `
        INSERT INTO app.app_installations (id, tenant_id, app_name, enabled, installed_by, config, created_at, updated_at)
        SELECT ${uuid('app', 'apps_off + g')}, tenant_id,
          (ARRAY['slack','github','jira-sync','pagerduty','figma','zapier','gitlab'])[1 + (g + n) % 7],
          true, users_off + 1, jsonb_build_object('webhook', true, 'channel', '#team-' || g),
          ${epoch} + n * interval '1 hour' + g * interval '1 day', ${epoch} + n * interval '1 hour' + g * interval '1 day'
        FROM gen_t, generate_series(1, apps_n) g`,
      ],
      // api_keys: one per three users
      [
        'app.api_keys',
        `
        INSERT INTO app.api_keys (id, tenant_id, user_id, key_hash, scopes, last_used_at, created_at)
        SELECT ${uuid('key', 'users_off + g')}, tenant_id, users_off + 1 + (g - 1) % users_n,
          md5('${seed}:secret:' || (users_off + g)), ARRAY['read', 'write'],
          CASE WHEN g % 4 = 0 THEN NULL ELSE ${epoch} + interval '400 days' END, ${epoch} + n * interval '1 hour'
        FROM gen_t, generate_series(1, keys_n) g`,
      ],
      // projects: one per 40 issues
      [
        'app.projects',
        `
        INSERT INTO app.projects (id, tenant_id, owner_id, key, name, created_at, updated_at)
        SELECT projects_off + g, tenant_id, users_off + 1 + (g - 1) % users_n, 'P' || g, 'Project ' || g,
          ${epoch} + n * interval '1 hour' + g * interval '1 day', ${epoch} + n * interval '1 hour' + g * interval '1 day'
        FROM gen_t, generate_series(1, projects_n) g`,
      ],
      [
        'app.labels',
        `
        INSERT INTO app.labels (id, tenant_id, name, color)
        SELECT labels_off + g, tenant_id,
          (ARRAY['bug','feature','chore','urgent','design','backend','frontend','docs','security','perf','ux','infra'])[g],
          '#' || substr(md5(tenant_id::text || g), 1, 6)
        FROM gen_t, generate_series(1, labels_n) g`,
      ],
      // issues: 10% are sub-issues of an earlier issue of the same tenant (self-reference)
      [
        'app.issues',
        `
        INSERT INTO app.issues (id, project_id, parent_id, reporter_id, assignee_id, title, status, priority, metadata, created_at, updated_at)
        SELECT issues_off + g, projects_off + 1 + (g - 1) % projects_n,
          CASE WHEN g > 1 AND ${rnd('issues_off + g', 5)} < 0.1 THEN issues_off + 1 + floor(${rnd('issues_off + g', 6)} * (g - 1))::bigint END,
          users_off + 1 + floor(${rnd('issues_off + g', 7)} * users_n)::bigint,
          CASE WHEN ${rnd('issues_off + g', 8)} < 0.7 THEN users_off + 1 + floor(${rnd('issues_off + g', 9)} * users_n)::bigint END,
          'Issue ' || g || ' of tenant ' || tenant_id,
          (ARRAY['open','in_progress','review','done','closed'])[1 + floor(${rnd('issues_off + g', 10)} * 5)::int],
          (1 + floor(${rnd('issues_off + g', 11)} * 5))::smallint,
          jsonb_build_object('estimate', (g % 13), 'source', CASE WHEN g % 5 = 0 THEN 'email' ELSE 'web' END),
          ${epoch} + n * interval '1 hour' + g * interval '10 minutes', ${epoch} + n * interval '1 hour' + g * interval '10 minutes'
        FROM gen_t, generate_series(1, issues_n) g`,
      ],
      // issue_labels: one or two labels per issue (1.5 on average)
      [
        'app.issue_labels',
        `
        INSERT INTO app.issue_labels (issue_id, label_id, added_at)
        SELECT issues_off + g, labels_off + 1 + (g + j * 3) % labels_n, ${epoch} + n * interval '1 hour' + g * interval '10 minutes'
        FROM gen_t, generate_series(1, issues_n) g, generate_series(0, 1) j
        WHERE j = 0 OR ${rnd('issues_off + g', 12)} < 0.5`,
      ],
      // comments: 0..5 per issue (2.5 on average); ids are sparse (issue id * 8 + k); 30% of later ones reply to the first
      [
        'app.comments',
        `
        INSERT INTO app.comments (id, issue_id, parent_id, author_id, body, created_at, updated_at) OVERRIDING SYSTEM VALUE
        SELECT (issues_off + g) * 8 + k, issues_off + g,
          CASE WHEN k > 1 AND ${rnd('(issues_off + g) * 8 + k', 13)} < 0.3 THEN (issues_off + g) * 8 + 1 END,
          users_off + 1 + floor(${rnd('(issues_off + g) * 8 + k', 14)} * users_n)::bigint,
          'Comment ' || k || ' on issue ' || (issues_off + g) || ': ' || repeat('lorem ipsum ', 1 + k),
          ${epoch} + n * interval '1 hour' + g * interval '10 minutes' + k * interval '1 minute',
          ${epoch} + n * interval '1 hour' + g * interval '10 minutes' + k * interval '1 minute'
        FROM gen_t, generate_series(1, issues_n) g, generate_series(1, 5) k
        WHERE k <= floor(${rnd('issues_off + g', 15)} * 6)`,
      ],
      // attachments: on one comment in four
      [
        'app.attachments',
        `
        INSERT INTO app.attachments (id, comment_id, file_name, content_type, size_bytes, created_at)
        SELECT ${uuid('att', 'c.id')}, c.id, 'file-' || c.id || '.png', 'image/png',
          1024 + floor(${rnd('c.id', 16)} * 5000000)::bigint, c.created_at
        FROM app.comments c WHERE ${rnd('c.id', 17)} < 0.25`,
      ],
    ];
    for (const [table, sql] of steps) await timed(`loaded ${table}`, sql);

    await timed('added constraints, indexes and triggers', postData);
    // Identity sequences continue after the generated ids, so that later inserts (the writer) never collide.
    for (const t of ['users', 'billing_accounts', 'projects', 'labels', 'issues', 'comments']) {
      await client.query(
        `SELECT setval(pg_get_serial_sequence('app.${t}', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM app.${t}), false)`,
      );
    }
    await timed('analyzed', 'ANALYZE');

    const rows: Record<string, number> = {};
    for (const table of [...sharedTables, ...ownedTables.map((t) => t.table)]) {
      const [schema, name] = table.split('.');
      const result = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${escapeIdentifier(schema)}.${escapeIdentifier(name)}`,
      );
      rows[table] = Number(result.rows[0].n);
    }
    const largest = await client.query<{ tenant_id: string; issues_n: number }>(
      'SELECT tenant_id::text, issues_n FROM gen_t ORDER BY issues_n DESC, n LIMIT 5',
    );
    const ids = await client.query<{ id: string }>('SELECT id::text FROM app.tenants ORDER BY id');
    await client.query('DROP TABLE gen_t');
    return {
      tenants,
      rows,
      totalRows: Object.values(rows).reduce((a, b) => a + b, 0),
      durationMs: Date.now() - started,
      tenantIds: ids.rows.map((r) => r.id),
      largestTenants: largest.rows.map((r) => ({ tenantId: r.tenant_id, issues: r.issues_n })),
    };
  });
}
