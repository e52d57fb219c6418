/**
 * Bad input (issue 7, part 3), through the real CLI as child processes and a real worker process running as the
 * least-privilege role of scripts/grants.sql. Each case must end with a clear message and exit code 2 (or, for a
 * problem of one tenant, exit 1 with the reason in the report), and live must be byte-for-byte unchanged. Names with
 * quotes, capitals, spaces and non-ASCII letters are not bad input: that fixture must restore.
 *
 * The cases and their real messages are written to .stack/reliability/bad-input.md (the README's table).
 */
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratchDatabaseName } from '../../activities/scratch';
import { createS3Client } from '../../activities/s3';
import { signedManifest, takeBackup } from '../../scripts/workload/backup';
import { generateWorkload } from '../../scripts/workload/generate';
import { purgeTenants } from '../../scripts/workload/incident';
import { applyGrants, createScratchRole, dropRoles, newPassword, privatePgpass, roleUrl } from '../helpers/audit';
import { psqlFile } from '../helpers/engine';
import { logDir, productEnv, runCli, WorkerProcess, type CliResult } from '../helpers/product';
import { adminQuery, dropDatabase, uniqueName, useFreshDatabases, useStackEnv } from '../helpers/stack';

const env = useStackEnv();
const { fresh } = useFreshDatabases();
const s3 = createS3Client();
const fixtures = join(__dirname, '..', 'fixtures', 'bad-input');
const run = uniqueName('badin');
const taskQueue = `reliability-${run}`;
const restoreRole = `${run}_restore`;
const noReplicaRole = `${run}_norepl`;
const scratchRole = `${run}_scratch`;
const passwords = { restore: newPassword(), noReplica: newPassword(), scratch: newPassword() };

interface Row {
  name: string;
  code: number;
  message: string;
}
const table: Row[] = [];

/** Byte-for-byte fingerprint of every table in live (count and md5 of the sorted row texts). */
async function fingerprint(url: string): Promise<Record<string, string>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET extra_float_digits = 3");
    const { rows: tables } = await client.query<{ t: string }>(`
      SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tr_audit') AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1`);
    const out: Record<string, string> = {};
    for (const { t } of tables) {
      const { rows } = await client.query<{ n: string; h: string | null }>(
        `SELECT count(*) AS n, md5(string_agg(x::text, E'\\n' ORDER BY x::text)) AS h FROM ${t} x`,
      );
      out[t] = `${rows[0]!.n}:${rows[0]!.h ?? '-'}`;
    }
    const { rows: seqs } = await client.query<{ s: string; v: string }>(
      `SELECT format('%I.%I', schemaname, sequencename) AS s, coalesce(last_value, 0)::text AS v FROM pg_sequences ORDER BY 1`,
    );
    for (const s of seqs) out[`sequence ${s.s}`] = s.v;
    return out;
  } finally {
    await client.end();
  }
}

async function adminQueryOn(url: string, sql: string, values?: unknown[]): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql, values);
  } finally {
    await client.end();
  }
}

async function put(key: string, body: Uint8Array | string): Promise<string> {
  await s3.send(new PutObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: key, Body: body }));
  return `s3://${env.STACK_S3_BUCKET}/${key}`;
}

async function get(key: string): Promise<Buffer> {
  const object = await s3.send(new GetObjectCommand({ Bucket: env.STACK_S3_BUCKET, Key: key }));
  return Buffer.from(await object.Body!.transformToByteArray());
}

/** The message an operator sees: stderr for a refused command, else the JSON's error or the failed tenants' reasons. */
function messageOf(result: CliResult): string {
  const json = result.json as
    { error?: string; tenants?: Array<{ tenantId: string; status: string; error?: string }> } | undefined;
  // The command's own words: from its first line on (Node's runtime warnings before it are not the product's).
  const stderr = result.stderr.slice(Math.max(0, result.stderr.indexOf('tenant-restore'))).trim();
  if (result.code === 2 && !json) return stderr;
  if (!json) return stderr;
  const failed = (json.tenants ?? [])
    .filter((t) => t.status !== 'restored' && t.status !== 'not-started')
    .map((t) => `tenant ${t.tenantId}: ${t.error ?? t.status}`);
  const restored = (json.tenants ?? []).filter((t) => t.status === 'restored').length;
  return (
    [json.error, ...failed].filter(Boolean).join('; ') ||
    `${(json as { status?: string }).status}: ${restored} tenant(s) restored and validated`
  );
}

function record(name: string, result: CliResult): string {
  const message = messageOf(result);
  table.push({ name, code: result.code, message });
  return message;
}

/** A database made from a SQL fixture: the source, its backup in S3, and live (the source minus the victim's rows). */
async function fixtureCase(
  file: string,
  schemas: string,
  deleteVictim: string,
): Promise<{ backup: string; live: { name: string; url: string } }> {
  const source = await fresh('rel_bad_src');
  psqlFile(source.url, join(fixtures, file));
  const key = `reliability/${run}/${file}.dump`;
  const { url: backup } = await takeBackup({ url: source.url, s3, bucket: env.STACK_S3_BUCKET, key, retentionDays: 1 });
  const live = await fresh('rel_bad_live', source.name);
  const client = new pg.Client({ connectionString: live.url });
  await client.connect();
  try {
    await client.query(`BEGIN; SET LOCAL session_replication_role = replica; ${deleteVictim}; COMMIT`);
  } finally {
    await client.end();
  }
  for (const [role, password] of [
    [restoreRole, passwords.restore],
    [noReplicaRole, passwords.noReplica],
  ] as const) {
    const granted = await applyGrants(live.name, role, password, schemas);
    expect(granted.code, granted.output).toBe(0);
  }
  // grants.sql grants SET on the parameter server-wide each time: take it back from the role that must not have it.
  await adminQuery(`REVOKE SET ON PARAMETER session_replication_role FROM ${pg.escapeIdentifier(noReplicaRole)}`);
  await adminQuery(`REVOKE CONNECT, TEMPORARY ON DATABASE ${pg.escapeIdentifier(live.name)} FROM PUBLIC`);
  return { backup, live };
}

describe('bad input through the CLI', () => {
  let live: { name: string; url: string };
  let backup: string;
  let victims: string[];
  let victimLabelId: string;
  let worker: WorkerProcess;
  let cliEnv: NodeJS.ProcessEnv;

  const restoreIds: string[] = [];
  const start = (
    args: string[],
    options: { live?: string; backup?: string; env?: NodeJS.ProcessEnv; tenantRoot?: string } = {},
  ) => {
    const id = uniqueName('bad').replace(/_/g, '-');
    restoreIds.push(id);
    return runCli(
      [
        'start',
        '--backup',
        options.backup ?? backup,
        '--live',
        options.live ?? roleUrl(restoreRole, live.name),
        '--tenant-root',
        options.tenantRoot ?? 'app.tenants',
        '--task-queue',
        taskQueue,
        '--id',
        id,
        '--wait',
        '--json',
        ...args,
      ],
      options.env ?? cliEnv,
    );
  };

  beforeAll(async () => {
    live = await fresh('rel_bad_live');
    const generated = await generateWorkload(live.url, { tenants: 12, rowsTarget: 2_500, seed: 5 });
    ({ url: backup } = await takeBackup({
      url: live.url,
      s3,
      bucket: env.STACK_S3_BUCKET,
      key: `reliability/${run}/base.dump`,
      retentionDays: 1,
    }));
    victims = generated.tenantIds.slice(1, 4);
    victimLabelId = (
      await adminQueryOn(live.url, 'SELECT min(id)::text AS id FROM app.labels WHERE tenant_id = $1', [victims[0]])
    ).rows[0].id as string;
    await purgeTenants(live.url, victims);
    for (const [role, password] of [
      [restoreRole, passwords.restore],
      [noReplicaRole, passwords.noReplica],
    ] as const) {
      expect((await applyGrants(live.name, role, password)).code).toBe(0);
    }
    // A role exactly like the restore role, except that it may not suspend FK checks (for the FK-cycle case).
    await adminQuery(`REVOKE SET ON PARAMETER session_replication_role FROM ${pg.escapeIdentifier(noReplicaRole)}`);
    await createScratchRole(scratchRole, passwords.scratch, [live.name]);
    const pgpass = privatePgpass(run, [
      { role: restoreRole, password: passwords.restore },
      { role: noReplicaRole, password: passwords.noReplica },
      { role: scratchRole, password: passwords.scratch },
    ]);
    cliEnv = productEnv({ PGPASSFILE: pgpass });
    worker = new WorkerProcess({ taskQueue, env: cliEnv, name: run });
    await worker.start();
  });

  afterAll(async () => {
    await worker?.stop();
    s3.destroy();
    const lines = [
      '| case | exit code | message |',
      '|---|---|---|',
      ...table.map(
        (r) =>
          `| ${r.name} | ${r.code} | ${r.message
            .replace(/\s*\n\s*/g, ' ')
            .replace(/\|/g, '\\|')
            .slice(0, 600)} |`,
      ),
    ];
    const file = join(logDir('.'), 'bad-input.md');
    writeFileSync(file, `${lines.join('\n')}\n`);
    process.stderr.write(`\n[bad-input] ${table.length} cases, table in ${file}\n${lines.join('\n')}\n`);
    // A failed restore keeps its scratch for a rerun (by design); these runs are over.
    for (const id of restoreIds) await dropDatabase(scratchDatabaseName(id));
    await dropRoles([restoreRole, noReplicaRole, scratchRole]);
  });

  it('unknown tenant id: the tenant fails with its reason in the report, nothing written', async () => {
    const before = await fingerprint(live.url);
    const result = await start(['--tenants', '999999']);
    const message = record('unknown tenant id (`--tenants 999999`)', result);
    expect(result.code, result.stderr).toBe(1);
    expect(message).toMatch(/999999.*no row in app\.tenants of the backup/);
    expect(await fingerprint(live.url)).toEqual(before);
  });

  it('an id that is not a bigint (the root key type), or out of its range: not in the backup either, nothing written', async () => {
    const before = await fingerprint(live.url);
    const result = await start(['--tenants', 'abc,99999999999999999999']);
    const message = record('ids that are not of the key type (`--tenants abc,99999999999999999999`)', result);
    expect(result.code, result.stderr).toBe(1);
    expect(message).toMatch(/abc.*no row in app\.tenants of the backup/);
    expect(message).toMatch(/99999999999999999999.*no row in app\.tenants of the backup/);
    expect(await fingerprint(live.url)).toEqual(before);
  });

  it('duplicated id, empty list, junk lines in a tenants file: exit 2 before anything starts', async () => {
    const before = await fingerprint(live.url);
    const duplicated = await start(['--tenants', `${victims[0]},${victims[1]},${victims[0]}`]);
    expect(duplicated.code).toBe(2);
    expect(record('duplicated id', duplicated)).toMatch(new RegExp(`tenant ${victims[0]} is already listed`));
    const empty = await start(['--tenants', '']);
    expect(empty.code).toBe(2);
    expect(record('empty list (`--tenants ""`)', empty)).toMatch(/empty/);
    const junk = await start(['--tenants-file', join(fixtures, 'junk-tenants.txt')]);
    expect(junk.code).toBe(2);
    const message = record('tenants file with junk lines', junk);
    expect(message).toMatch(/line 5 \("tenant: 100004"\) is not a tenant id/);
    expect(message).toMatch(/line 6 \("100005;DROP TABLE app.tenants"\) is not a tenant id/);
    expect(message).toMatch(/line 7: tenant 100003 is already listed at .*line 3/);
    // Blank lines and comments (whole-line and trailing) are fine: they are not reported.
    expect(message.match(/line \d+/g)).toEqual(['line 5', 'line 6', 'line 7', 'line 3']);
    expect(await fingerprint(live.url)).toEqual(before);
  });

  it('S3 object that does not exist, and wrong S3 credentials: exit 2', async () => {
    const before = await fingerprint(live.url);
    const missing = await start(['--tenants', victims[0]!], {
      backup: `s3://${env.STACK_S3_BUCKET}/reliability/${run}/nope.dump`,
    });
    expect(missing.code).toBe(2);
    expect(record('S3 object that does not exist', missing)).toMatch(/nope\.dump does not exist/);
    const creds = await start(['--tenants', victims[0]!], {
      env: { ...cliEnv, AWS_SECRET_ACCESS_KEY: 'not-the-secret' },
    });
    expect(creds.code).toBe(2);
    const message = record('wrong S3 credentials', creds);
    expect(message).toMatch(/access denied/i);
    expect(message).not.toContain('not-the-secret');
    expect(await fingerprint(live.url)).toEqual(before);
  });

  it('truncated or corrupted archive: refused before scratch is used, exit 2', async () => {
    const before = await fingerprint(live.url);
    const bytes = await get(`reliability/${run}/base.dump`);
    const real = JSON.parse((await get(`reliability/${run}/base.dump.manifest.json`)).toString()) as {
      sha256: string;
      size: number;
    };
    // The real archive's manifest, signed by the backup job for each key (a signature names its archive): the bytes
    // changed after the backup job signed them.
    const manifestFor = (key: string) => JSON.stringify(signedManifest(key, { sha256: real.sha256, size: real.size }));
    // Truncated, with the manifest of the real archive next to it.
    const truncated = await put(`reliability/${run}/truncated.dump`, bytes.subarray(0, Math.floor(bytes.length / 2)));
    await put(`reliability/${run}/truncated.dump.manifest.json`, manifestFor(`reliability/${run}/truncated.dump`));
    const t = await start(['--tenants', victims[0]!], { backup: truncated });
    expect(t.code, t.stdout + t.stderr).toBe(2);
    expect(record('truncated archive (manifest says otherwise)', t)).toMatch(
      /truncated\.dump is \d+ bytes, its manifest says \d+/,
    );
    // Same size, some bytes flipped in the middle.
    const flipped = Buffer.from(bytes);
    for (let i = 0; i < 64; i++) flipped[Math.floor(bytes.length / 2) + i] ^= 0xff;
    const corrupted = await put(`reliability/${run}/corrupted.dump`, flipped);
    await put(`reliability/${run}/corrupted.dump.manifest.json`, manifestFor(`reliability/${run}/corrupted.dump`));
    const c = await start(['--tenants', victims[0]!], { backup: corrupted });
    expect(c.code, c.stdout + c.stderr).toBe(2);
    expect(record('corrupted archive (sha256 differs from the manifest)', c)).toMatch(
      /corrupted\.dump has sha256 [0-9a-f]{64}, its manifest says [0-9a-f]{64}/,
    );
    // Truncated, and no manifest at all: refused as unverified unless allowed; allowed, only pg_restore can tell.
    const bare = await put(`reliability/${run}/bare-truncated.dump`, bytes.subarray(0, Math.floor(bytes.length / 3)));
    const b = await start(['--tenants', victims[0]!, '--allow-unverified-backup'], { backup: bare });
    expect(b.code, b.stdout + b.stderr).toBe(2);
    expect(record('truncated archive without a manifest', b)).toMatch(
      /bare-truncated\.dump.*(not a valid|corrupt|truncated)/i,
    );
    expect(await fingerprint(live.url)).toEqual(before);
  });

  it('live unreachable: refused before anything starts', async () => {
    const before = await fingerprint(live.url);
    const result = await start(['--tenants', victims[0]!], {
      live: `postgres://${restoreRole}@127.0.0.1:1/${live.name}`,
    });
    expect(result.code, result.stdout + result.stderr).toBe(3);
    expect(record('live unreachable (`--live postgres://…@127.0.0.1:1/…`)', result)).toMatch(
      /live.*127\.0\.0\.1:1.*not reachable/i,
    );
    expect(await fingerprint(live.url)).toEqual(before);
  });

  it('incompatible schema drift: refused at planning, exit 2', async () => {
    const drifted = await fresh('rel_bad_drift', live.name);
    const c = new pg.Client({ connectionString: drifted.url });
    await c.connect();
    await c.query(
      "ALTER TABLE app.users ADD COLUMN region text NOT NULL DEFAULT 'eu'; ALTER TABLE app.users ALTER COLUMN region DROP DEFAULT",
    );
    await c.end();
    expect((await applyGrants(drifted.name, restoreRole, passwords.restore)).code).toBe(0);
    const before = await fingerprint(drifted.url);
    const result = await start(['--tenants', victims[0]!], { live: roleUrl(restoreRole, drifted.name) });
    expect(result.code, result.stdout + result.stderr).toBe(2);
    expect(record('incompatible schema drift (live has `users.region text NOT NULL`, no default)', result)).toMatch(
      /app\.users.*region/,
    );
    expect(await fingerprint(drifted.url)).toEqual(before);
  });

  it('a key owned by another tenant: that tenant fails with the reason, nothing of it is written', async () => {
    const clash = await fresh('rel_bad_clash', live.name);
    const victim = victims[0]!;
    const c = new pg.Client({ connectionString: clash.url });
    await c.connect();
    // After the deletion, live gave one of the victim's label ids to another tenant.
    await c.query(
      `INSERT INTO app.labels (id, tenant_id, name, color) SELECT $1::bigint, min(id), 'taken', '#123456' FROM app.tenants`,
      [victimLabelId],
    );
    await c.end();
    expect((await applyGrants(clash.name, restoreRole, passwords.restore)).code).toBe(0);
    const before = await fingerprint(clash.url);
    const result = await start(['--tenants', victim], { live: roleUrl(restoreRole, clash.name) });
    expect(result.code, result.stdout + result.stderr).toBe(1);
    expect(record('a key owned by another tenant (`app.labels` id taken in live)', result)).toMatch(
      /app\.labels.*another tenant|another tenant.*app\.labels/i,
    );
    expect(await fingerprint(clash.url)).toEqual(before);
  });

  it('a table without a primary key, a tenant root that is a view or has no primary key: exit 2, saying what is needed', async () => {
    const { backup: b, live: l } = await fixtureCase(
      'primary-keys.sql',
      'app',
      'DELETE FROM app.notes WHERE tenant_id = 2; DELETE FROM app.projects WHERE tenant_id = 2; DELETE FROM app.tenants WHERE id = 2',
    );
    const before = await fingerprint(l.url);
    const noPk = await start(['--tenants', '2'], { backup: b, live: roleUrl(restoreRole, l.name) });
    expect(noPk.code, noPk.stdout + noPk.stderr).toBe(2);
    expect(record('a table without a primary key (`app.notes`)', noPk)).toMatch(
      /app\.notes has no primary key.*Add a primary key/,
    );
    const view = await start(['--tenants', '2'], {
      backup: b,
      live: roleUrl(restoreRole, l.name),
      tenantRoot: 'app.tenant_names',
    });
    expect(view.code, view.stdout + view.stderr).toBe(2);
    expect(record('tenant root is a view (`--tenant-root app.tenant_names`)', view)).toMatch(
      /app\.tenant_names is not a table/,
    );
    const rootNoPk = await start(['--tenants', '2'], {
      backup: b,
      live: roleUrl(restoreRole, l.name),
      tenantRoot: 'app.notes',
    });
    expect(rootNoPk.code, rootNoPk.stdout + rootNoPk.stderr).toBe(2);
    expect(record('tenant root without a primary key (`--tenant-root app.notes`)', rootNoPk)).toMatch(
      /app\.notes must have a single-column primary key/,
    );
    expect(await fingerprint(l.url)).toEqual(before);
  });

  it('an FK cycle with neither a deferrable nor a nullable edge: refused when FK checks cannot be suspended, restored when they can', async () => {
    const { backup: b, live: l } = await fixtureCase(
      'fk-cycle.sql',
      'app',
      'DELETE FROM app.b WHERE tenant_id = 2; DELETE FROM app.a WHERE tenant_id = 2; DELETE FROM app.tenants WHERE id = 2',
    );
    const before = await fingerprint(l.url);
    const refused = await start(['--tenants', '2'], { backup: b, live: roleUrl(noReplicaRole, l.name) });
    expect(refused.code, refused.stdout + refused.stderr).toBe(2);
    expect(
      record('FK cycle, no deferrable or nullable edge, role without `SET session_replication_role`', refused),
    ).toMatch(/app\.a.*app\.b|app\.b.*app\.a/);
    expect(await fingerprint(l.url)).toEqual(before);
    const restored = await start(['--tenants', '2'], { backup: b, live: roleUrl(restoreRole, l.name) });
    record('the same cycle, with the role of grants.sql (FK checks suspended in its transaction)', restored);
    expect(restored.code, restored.stdout + restored.stderr).toBe(0);
    const [counts] = (
      await adminQueryOn(
        l.url,
        'SELECT (SELECT count(*) FROM app.a WHERE tenant_id = 2)::int AS a, (SELECT count(*) FROM app.b WHERE tenant_id = 2)::int AS b',
      )
    ).rows;
    expect(counts).toEqual({ a: 1, b: 1 });
  });

  it('identifiers with quotes, capitals, spaces and non-ASCII letters restore fine', async () => {
    const { backup: b, live: l } = await fixtureCase(
      'identifiers.sql',
      'Mañana "Co"',
      `SET LOCAL search_path = "Mañana ""Co"""; DELETE FROM "Ïssues x" WHERE "project id" IN (20, 21); DELETE FROM "Prójects" WHERE "Tenant ID" = 2; DELETE FROM "Tenant's Root" WHERE "Tenant ID" = 2`,
    );
    const result = await start(['--tenants', '2'], {
      backup: b,
      live: roleUrl(restoreRole, l.name),
      tenantRoot: `Mañana "Co".Tenant's Root`,
    });
    record('identifiers with quotes, capitals, spaces, non-ASCII (`Mañana "Co".Tenant\'s Root`): not an error', result);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const client = new pg.Client({ connectionString: l.url });
    await client.connect();
    try {
      const { rows } = await client.query(`SET search_path = "Mañana ""Co"""; SELECT NULL`).then(() =>
        client.query<{ t: string }>(
          `SELECT string_agg(x::text, ' / ' ORDER BY x::text) AS t FROM (
           SELECT r::text AS x FROM "Mañana ""Co"""."Tenant's Root" r WHERE "Tenant ID" = 2
           UNION ALL SELECT p::text FROM "Mañana ""Co"""."Prójects" p WHERE "Tenant ID" = 2
           UNION ALL SELECT i::text FROM "Mañana ""Co"""."Ïssues x" i WHERE "project id" IN (20, 21)) s`,
        ),
      );
      expect(rows[0]!.t).toBe(
        [
          '(2,"Zwëite ""GmbH""",2)',
          '(20,2,"Projékt \'eins\'")',
          '(200,20,,"ümlaut body")',
          '(201,20,200,"child of 200")',
          '(202,21,201,"tab\there")',
          '(21,2,"Projekt ""zwei""")',
        ].join(' / '),
      );
    } finally {
      await client.end();
    }
  });
});
