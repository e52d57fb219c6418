/**
 * The demo's workload against the real stack: the generator (sizes, skew, FK integrity, determinism), the backup in
 * MinIO (checksum, manifest, immutability), the incident, the concurrent writer, and the checksums that later prove
 * a restore left every other tenant alone.
 */
import { GetObjectCommand, GetObjectRetentionCommand, GetBucketVersioningCommand } from '@aws-sdk/client-s3';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../activities/db';
import { createS3Client } from '../../activities/s3';
import {
  compareSnapshots,
  diffChecksums,
  ensureVerifyDatabase,
  snapshotRows,
  tenantChecksums,
} from '../../scripts/workload/checksums';
import { generateWorkload, type GenerateResult } from '../../scripts/workload/generate';
import { pickVictims, purgeTenants, suspendTenants } from '../../scripts/workload/incident';
import { ownedTables } from '../../scripts/workload/model';
import { takeBackup } from '../../scripts/workload/backup';
import { Writer } from '../../scripts/workload/writer';
import { dropDatabase, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const small = { tenants: 40, rowsTarget: 30_000, seed: 7 };

async function query<T extends Record<string, unknown>>(url: string, sql: string, values?: unknown[]): Promise<T[]> {
  const client = await connect(url, 'workload-test');
  try {
    return (await client.query<T>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

async function until(check: () => boolean): Promise<void> {
  while (!check()) await new Promise((r) => setTimeout(r, 50));
}

describe('workload generator', () => {
  let db: { name: string; url: string };
  let generated: GenerateResult;

  beforeAll(async () => {
    db = await fresh('wl_gen');
    generated = await generateWorkload(db.url, small);
  });

  it('creates the requested tenants and about the requested number of rows, with skewed tenant sizes', async () => {
    expect(generated.tenants).toBe(40);
    expect(generated.tenantIds).toHaveLength(40);
    expect(generated.rows['app.tenants']).toBe(40);
    expect(generated.rows['app.billing_accounts']).toBe(40);
    expect(generated.totalRows).toBeGreaterThan(small.rowsTarget * 0.9);
    expect(generated.totalRows).toBeLessThan(small.rowsTarget * 1.1);
    for (const t of ownedTables) expect(generated.rows[t.table], t.table).toBeGreaterThan(0);
    // The counts returned are the counts in the database.
    const [{ n }] = await query<{ n: string }>(db.url, 'SELECT count(*) AS n FROM app.comments');
    expect(Number(n)).toBe(generated.rows['app.comments']);
    const sizes = await query<{ issues: string }>(
      db.url,
      'SELECT count(*) AS issues FROM app.issues i JOIN app.projects p ON p.id = i.project_id GROUP BY p.tenant_id ORDER BY 1',
    );
    const median = Number(sizes[Math.floor(sizes.length / 2)].issues);
    expect(Number(sizes[sizes.length - 1].issues)).toBeGreaterThan(median * 4);
    expect(generated.largestTenants[0].issues).toBe(Number(sizes[sizes.length - 1].issues));
  });

  it('declares every foreign key, validated, and has no orphan and no cross-tenant reference', async () => {
    const fks = await query<{ conname: string; convalidated: boolean }>(
      db.url,
      "SELECT conname, convalidated FROM pg_constraint WHERE contype = 'f' AND connamespace = 'app'::regnamespace",
    );
    expect(fks.length).toBe(23);
    expect(fks.every((f) => f.convalidated)).toBe(true);
    const noPk = await query(
      db.url,
      `
      SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'app'::regnamespace AND c.relkind = 'r'
        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p')`,
    );
    expect(noPk).toEqual([]);
    // Every reference stays inside its tenant: what makes per-tenant restore possible at all.
    const [cross] = await query<{ issues: string; comments: string; labels: string }>(
      db.url,
      `
      SELECT
        (SELECT count(*) FROM app.issues i JOIN app.projects p ON p.id = i.project_id JOIN app.users u ON u.id = i.reporter_id
          WHERE u.tenant_id <> p.tenant_id) AS issues,
        (SELECT count(*) FROM app.comments c JOIN app.comments parent ON parent.id = c.parent_id WHERE parent.issue_id <> c.issue_id) AS comments,
        (SELECT count(*) FROM app.issue_labels il JOIN app.labels l ON l.id = il.label_id JOIN app.issues i ON i.id = il.issue_id
          JOIN app.projects p ON p.id = i.project_id WHERE l.tenant_id <> p.tenant_id) AS labels`,
    );
    expect(cross).toEqual({ issues: '0', comments: '0', labels: '0' });
    const [shape] = await query<{ parents: string; replies: string; always: string }>(
      db.url,
      `
      SELECT (SELECT count(*) FROM app.issues WHERE parent_id IS NOT NULL) AS parents,
             (SELECT count(*) FROM app.comments WHERE parent_id IS NOT NULL) AS replies,
             (SELECT attidentity FROM pg_attribute WHERE attrelid = 'app.comments'::regclass AND attname = 'id') AS always`,
    );
    expect(Number(shape.parents)).toBeGreaterThan(0);
    expect(Number(shape.replies)).toBeGreaterThan(0);
    expect(shape.always).toBe('a');
  });

  it('is deterministic for a seed, and another seed gives other data', async () => {
    const again = await fresh('wl_gen_again');
    await generateWorkload(again.url, small);
    const other = await fresh('wl_gen_other');
    await generateWorkload(other.url, { ...small, seed: 8 });
    const ids = generated.tenantIds;
    const first = await tenantChecksums(db.url, ids);
    expect(diffChecksums(first, await tenantChecksums(again.url, ids))).toEqual([]);
    expect(diffChecksums(first, await tenantChecksums(other.url, ids)).length).toBeGreaterThan(0);
  });

  it('keeps identity sequences past the generated ids, and the updated_at trigger fires', async () => {
    const [row] = await query<{ id: string; updated_at: Date; created_at: Date }>(
      db.url,
      "INSERT INTO app.comments (issue_id, author_id, body) SELECT id, reporter_id, 'x' FROM app.issues ORDER BY id LIMIT 1 RETURNING id::text, created_at, updated_at",
    );
    const [{ max }] = await query<{ max: string }>(db.url, 'SELECT max(id)::text AS max FROM app.comments');
    expect(row.id).toBe(max);
    const [touched] = await query<{ updated_at: Date; created_at: Date }>(
      db.url,
      "UPDATE app.issues SET status = 'done' WHERE id = (SELECT min(id) FROM app.issues) RETURNING created_at, updated_at",
    );
    expect(touched.updated_at.getTime()).toBeGreaterThan(touched.created_at.getTime());
  });
});

describe('backup into MinIO', () => {
  const s3 = createS3Client();
  afterAll(() => s3.destroy());

  it('streams pg_dump -Fc into an immutable object whose sha256 and size match its manifest', async () => {
    const db = await fresh('wl_backup');
    await generateWorkload(db.url, { tenants: 10, rowsTarget: 5_000, seed: 3 });
    const key = `test/${uniqueName('backup')}.dump`;
    const result = await takeBackup({ url: db.url, s3, bucket: env.STACK_S3_BUCKET, key, retentionDays: 1 });
    expect(result.url).toBe(`s3://${env.STACK_S3_BUCKET}/${key}`);
    expect(result.manifest.database).toBe(db.name);
    expect(result.manifest.pgDumpVersion).toMatch(/^pg_dump \(PostgreSQL\) 15\./);

    const object = await s3.send(new GetObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: key }));
    const bytes = Buffer.from(await object.Body!.transformToByteArray());
    expect(bytes.length).toBe(result.manifest.sizeBytes);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(result.manifest.sha256);
    expect(bytes.subarray(0, 5).toString()).toBe('PGDMP');
    // The archive is a real, complete pg_dump archive: pg_restore lists the tables' data.
    const list = spawnSync('pg_restore', ['--list'], { input: bytes, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/TABLE DATA app comments/);

    const manifest = JSON.parse(
      await (
        await s3.send(new GetObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: `${key}.manifest.json` }))
      ).Body!.transformToString(),
    ) as typeof result.manifest;
    expect(manifest).toEqual(result.manifest);

    if (result.manifest.immutability.mode === 'object-lock') {
      const retention = await s3.send(new GetObjectRetentionCommand({ Bucket: env.STACK_S3_BUCKET, Key: key }));
      expect(retention.Retention?.Mode).toBe('GOVERNANCE');
      expect(retention.Retention?.RetainUntilDate?.getTime()).toBeGreaterThan(Date.parse(result.manifest.createdAt));
    } else {
      const versioning = await s3.send(new GetBucketVersioningCommand({ Bucket: env.STACK_S3_BUCKET }));
      expect(versioning.Status).toBe('Enabled');
    }
  });
});

describe('incident, writer and the untouched-tenants proof', () => {
  it('purges the victims, writes only other tenants, and the snapshots prove it; a stray change is caught', async () => {
    const db = await fresh('wl_incident');
    const generated = await generateWorkload(db.url, { tenants: 30, rowsTarget: 20_000, seed: 11 });
    const victims = pickVictims(
      generated.tenantIds,
      6,
      11,
      generated.largestTenants.map((t) => t.tenantId),
    );
    expect(victims).toHaveLength(6);
    expect(victims).toContain(generated.largestTenants[0].tenantId);
    expect(
      pickVictims(
        generated.tenantIds,
        6,
        11,
        generated.largestTenants.map((t) => t.tenantId),
      ),
    ).toEqual(victims);

    const suspended = await suspendTenants(db.url, victims);
    expect(suspended.billingAccounts).toBe(6);
    const victimsBefore = await tenantChecksums(db.url, victims);
    const verifyUrl = await ensureVerifyDatabase(db.url);
    const verifyName = `${db.name}_verify`;
    try {
      const writer = new Writer({ url: db.url, excludeTenants: victims, connections: 2, pauseMs: 0, seed: 5 });
      await writer.start();
      await until(() => writer.log.length >= 20);
      const purge = await purgeTenants(db.url, victims);
      expect(purge.deleted['app.tenants']).toBe(6);
      expect(purge.totalDeleted).toBe(
        Object.values(victimsBefore).reduce(
          (sum, tables) => sum + Object.values(tables).reduce((s, t) => s + t.rows, 0),
          0,
        ),
      );
      const before = await snapshotRows(db.url, verifyUrl, 'before', victims);
      expect(before.rows).toBeGreaterThan(0);
      const seen = writer.log.length;
      await until(() => writer.log.length >= seen + 40);
      const stats = await writer.stop();
      expect(stats.errors).toBe(0);
      expect(stats.latency.count).toBe(stats.transactions);
      expect(stats.latency.p99).toBeGreaterThanOrEqual(stats.latency.p50);
      expect(new Set(writer.log.map((e) => e.op))).toEqual(new Set(['insert', 'update', 'delete']));
      expect(writer.log.some((e) => victims.includes(e.tenantId))).toBe(false);

      // The victims are gone entirely.
      const gone = await tenantChecksums(db.url, victims);
      for (const v of victims) for (const t of ownedTables) expect(gone[v][t.table].rows, `${v} ${t.table}`).toBe(0);

      await snapshotRows(db.url, verifyUrl, 'after', victims);
      const clean = await compareSnapshots(verifyUrl, 'before', 'after', writer.log);
      expect(clean.violations).toBe(0);
      expect(clean.rowsWrittenByWriter).toBeGreaterThan(0);
      expect(clean.rowsUnchanged).toBeGreaterThan(0);

      // A change the writer did not make, in a non-victim tenant, is a violation; so is a row the writer did not insert.
      const other = generated.tenantIds.find((id) => !victims.includes(id))!;
      await query(
        db.url,
        "UPDATE app.labels SET color = '#000000' WHERE id = (SELECT min(id) FROM app.labels WHERE tenant_id = $1)",
        [other],
      );
      await query(db.url, "INSERT INTO app.labels (tenant_id, name, color) VALUES ($1, 'stray', '#ffffff')", [other]);
      await snapshotRows(db.url, verifyUrl, 'after', victims);
      const dirty = await compareSnapshots(verifyUrl, 'before', 'after', writer.log);
      expect(dirty.violations).toBe(2);
      expect(dirty.examples.map((e) => e.table)).toEqual(['app.labels', 'app.labels']);
      // Forgetting the writer's log turns its own legitimate changes into violations too.
      const withoutLog = await compareSnapshots(verifyUrl, 'before', 'after', []);
      expect(withoutLog.violations).toBeGreaterThan(2);
    } finally {
      await dropDatabase(verifyName);
    }
  });
});
