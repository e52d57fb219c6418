/** Input checks of `tenant-restore start` (exit 2, nothing written) and small pure helpers of the orchestration. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { scratchDatabaseName, splitStatements } from '../../activities/scratch';
import { checkDatabaseRef, parseTenantList, parseTenantsFile } from '../../cli/client/input';
import { buildStartRequest, inlineTenantLimit } from '../../cli/client/start';

const base = {
  backup: 's3://bkt/k.dump',
  live: 'postgres://restore@db:5432/app',
  'tenant-root': 'app.tenants',
  tenants: '1,2,3',
};

/** The command line's configured scratch server (a server of its own): without one, a --backup is refused. */
const cliEnv = { TENANT_RESTORE_SCRATCH_SERVER: 'postgres://scratch@scratch.internal:5432/postgres' };

describe('start input checks', () => {
  it('builds a workflow input with the tenants inline and artifacts under the restore id', () => {
    const { input, taskQueue } = buildStartRequest({ ...base, id: 'r1', concurrency: '7' }, cliEnv);
    expect(input).toMatchObject({
      restoreId: 'r1',
      tenants: ['1', '2', '3'],
      concurrency: 7,
      conflict: 'skip',
      artifacts: { bucket: 'bkt', prefix: 'restores/r1/' },
    });
    expect(taskQueue).toBe('tenant-restore');
  });

  it('refuses a password in a database URL and says where it should go', () => {
    expect(() => checkDatabaseRef('live', 'postgres://u:secret@db/app')).toThrow(
      /PGPASSFILE.*TENANT_RESTORE_DB_<ALIAS>/s,
    );
    expect(() => buildStartRequest({ ...base, live: 'postgres://u:secret@db/app' }, cliEnv)).toThrow(/password/);
    expect(() => buildStartRequest({ ...base, 'scratch-server': 'postgres://u:pw@db/x' }, cliEnv)).toThrow(/password/);
    expect(checkDatabaseRef('live', 'live')).toBe('live');
    expect(() => checkDatabaseRef('live', 'mysql://db/x')).toThrow(/neither/);
    expect(() => checkDatabaseRef('live', 'postgres://db')).toThrow(/no database/);
  });

  it('refuses empty, duplicate and junk tenant ids, with their position', () => {
    expect(() => parseTenantList('1,,2', '--tenants')).toThrow(/entry 2 is empty/);
    expect(() => parseTenantList('1,2,1', '--tenants')).toThrow(/tenant 1 is already listed/);
    expect(() => parseTenantList('1; DROP TABLE x', '--tenants')).toThrow(/not a tenant id/);
    const dir = mkdtempSync(join(tmpdir(), 'tenants-'));
    const file = join(dir, 'ids');
    writeFileSync(file, '# comment\n1\n\n2  # inline comment\nfoo bar\n');
    expect(() => parseTenantsFile(file)).toThrow(/line 5/);
    writeFileSync(file, '1\n2\n');
    expect(parseTenantsFile(file)).toEqual(['1', '2']);
    writeFileSync(file, '# only comments\n');
    expect(() => parseTenantsFile(file)).toThrow(/empty/);
  });

  it('refuses bad policies, concurrency, ids, URLs and flag combinations', () => {
    expect(() => buildStartRequest({ ...base, conflict: 'merge' }, cliEnv)).toThrow(/skip, overwrite, fail/);
    expect(() => buildStartRequest({ ...base, concurrency: '0' }, cliEnv)).toThrow(/1 to 1000/);
    expect(() => buildStartRequest({ ...base, concurrency: '2.5' }, cliEnv)).toThrow(/1 to 1000/);
    expect(() => buildStartRequest({ ...base, id: 'has space' }, cliEnv)).toThrow(/--id/);
    expect(() => buildStartRequest({ ...base, backup: 'http://x/y' }, cliEnv)).toThrow(/S3 URL/);
    expect(() => buildStartRequest({ ...base, scratch: 'postgres://db/s' }, cliEnv)).toThrow(/not both/);
    expect(() => buildStartRequest({ ...base, 'tenant-root': 'tenants' }, cliEnv)).toThrow(/schema\.table/);
    expect(() => buildStartRequest({ ...base, backup: undefined, scratch: 'postgres://db/s' }, cliEnv)).toThrow(
      /--artifacts/,
    );
    expect(() => buildStartRequest({ ...base, tenants: undefined }, cliEnv)).toThrow(/--tenants/);
  });

  it('moves a long tenant list to S3 instead of the workflow input', () => {
    const ids = Array.from({ length: inlineTenantLimit + 1 }, (_, i) => String(i + 1)).join(',');
    const { input, upload } = buildStartRequest({ ...base, tenants: ids, id: 'big' }, cliEnv);
    expect(input.tenants).toBeUndefined();
    expect(input.tenantsObject).toEqual({ bucket: 'bkt', key: 'restores/big/tenants.input.json' });
    expect(upload?.ids).toHaveLength(inlineTenantLimit + 1);
  });
});

describe('scratch helpers', () => {
  it('names scratch after the restore, within 63 bytes', () => {
    expect(scratchDatabaseName('R-2024.1')).toMatch(/^scratch_r_2024_1_[0-9a-f]{12}$/);
    const long = scratchDatabaseName('x'.repeat(100));
    expect(long.length).toBeLessThanOrEqual(63);
    expect(long).not.toBe(scratchDatabaseName(`${'x'.repeat(99)}y`));
  });

  it('splits a pg_restore script into statements without comments or psql meta-commands', () => {
    const script =
      '--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET x = 1;\n\n--\n-- Name: a fk\n--\n\nALTER TABLE ONLY app.a\n    ADD CONSTRAINT fk FOREIGN KEY (b) REFERENCES app.b(id);\n\n\\unrestrict abc\n';
    expect(splitStatements(script)).toEqual([
      'SET x = 1',
      'ALTER TABLE ONLY app.a\n    ADD CONSTRAINT fk FOREIGN KEY (b) REFERENCES app.b(id)',
    ]);
  });
});
