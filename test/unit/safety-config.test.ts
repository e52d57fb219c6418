/**
 * Issue 11, items 5 (webhook secrets) and 8 (small ones): what the config validation refuses, with the JSON path and
 * what to do; drill configs go through the same validation; uuid tenant ids compared without regard to case; the
 * explicit choice of who checks FKs (item 7b).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isSecretHeaderName, isSecretQueryName, parseConfig, validateConfig } from '../../activities/config';
import { InvalidConfigError } from '../../activities/errors';
import { fkChecksFromEnv } from '../../activities/plan';
import { redirectTarget, resolveHeaders } from '../../activities/reenable';
import { tenantListProblems } from '../../activities/tenant-list';
import { drillInputFromFlags } from '../../cli/client/drill';
import { parseTenantList } from '../../cli/client/input';
import { normalizeTenantId, reenableActionTimeoutSeconds } from '../../workflows/definitions';

const projectRootDir = join(__dirname, '..', '..');
const webhook = (extra: Record<string, unknown>) =>
  JSON.stringify({ actions: [{ name: 'notify', type: 'webhook', url: 'https://hooks.example.com/x', ...extra }] });
const problemsOf = (text: string): string[] => {
  try {
    parseConfig(text);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidConfigError);
    return (error as InvalidConfigError & { details?: { problems?: string[] } }).message.split('\n  - ').slice(1);
  }
  return [];
};

describe('webhook URLs and headers carry no secret (item 5)', () => {
  it('refuses credentials in the URL, naming the JSON path and the env: alternative', () => {
    const problems = problemsOf(webhook({ url: 'https://user:pw@hooks.example.com/x' }));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(
      /^actions\[0\]\.url: carries credentials .*'Authorization' header with the value 'env:NAME'/,
    );
    expect(problems[0]).not.toContain('pw@');
    expect(problemsOf(webhook({ url: 'https://user@hooks.example.com/x' }))[0]).toMatch(
      /^actions\[0\]\.url: carries credentials/,
    );
  });

  it('refuses a token in the query, whatever its case, and accepts ordinary parameters', () => {
    for (const name of [
      'token',
      'access_token',
      'key',
      'api_key',
      'apikey',
      'apiKey',
      'secret',
      'signature',
      'sig',
      'password',
      'auth',
      'TOKEN',
      'X-Amz-Signature',
      'client_secret',
    ]) {
      const problems = problemsOf(webhook({ url: `https://hooks.example.com/x?tenant=1&${name}=abc` }));
      expect(problems, name).toHaveLength(1);
      expect(problems[0], name).toContain(`actions[0].url: its query carries '${name}'`);
      expect(problems[0], name).toContain("header with the value 'env:NAME'");
    }
    for (const name of ['tenant', 'author', 'keyword', 'page', 'monkey'])
      expect(isSecretQueryName(name), name).toBe(false);
    expect(problemsOf(webhook({ url: 'https://hooks.example.com/x?tenant=1&author=me' }))).toEqual([]);
  });

  it('requires env: for headers that look like secrets, and accepts literal ordinary ones', () => {
    for (const name of [
      'Authorization',
      'authorization',
      'Cookie',
      'X-Api-Key',
      'X-Auth-Token',
      'x-client-secret',
      'X-Password',
      'Proxy-Authorization',
    ]) {
      expect(isSecretHeaderName(name), name).toBe(true);
      const problems = problemsOf(webhook({ headers: { [name]: 'Bearer abc123' } }));
      expect(problems, name).toEqual([
        `actions[0].headers.${name}: looks like a secret and must be given as 'env:NAME' (NAME: a variable of the worker's environment named TENANT_RESTORE_WEBHOOK_*), so that its value is in neither the config nor workflow history`,
      ]);
      expect(problemsOf(webhook({ headers: { [name]: 'env:TENANT_RESTORE_WEBHOOK_HOOK_TOKEN' } })), name).toEqual([]);
    }
    expect(problemsOf(webhook({ headers: { 'X-Source': 'tenant-restore', Accept: 'application/json' } }))).toEqual([]);
    expect(problemsOf(webhook({ headers: { 'X-Source': 7 } }))).toEqual([
      'actions[0].headers.X-Source: must be a string',
    ]);
  });

  it('the worker refuses a literal secret header too (an input that did not go through validation)', () => {
    expect(() => resolveHeaders({ Authorization: 'Bearer abc' }, {})).toThrow(
      /Authorization .*looks like a secret.*'env:NAME'/,
    );
    expect(
      resolveHeaders(
        { Authorization: 'env:TENANT_RESTORE_WEBHOOK_T', 'X-Source': 'tr' },
        { TENANT_RESTORE_WEBHOOK_T: 'Bearer x' },
      ),
    ).toEqual({
      Authorization: 'Bearer x',
      'X-Source': 'tr',
    });
  });

  it('says where a redirect pointed without its query', () => {
    expect(redirectTarget('https://a.example/x', 'https://b.example/y?token=abc')).toBe(
      'https://b.example/y (query left out)',
    );
    expect(redirectTarget('https://a.example/x', '/z')).toBe('https://a.example/z');
    expect(redirectTarget('https://a.example/x', null)).toMatch(/no Location/);
  });
});

describe('actions (item 8)', () => {
  it('accepts only booleans for requiresApproval', () => {
    const sql = (requiresApproval: unknown) =>
      JSON.stringify({ actions: [{ name: 'billing', type: 'sql', sql: 'SELECT $1', requiresApproval }] });
    expect(problemsOf(sql('false'))).toEqual([
      'actions[0].requiresApproval: must be true or false (a JSON boolean, not "false")',
    ]);
    expect(problemsOf(sql(1))).toEqual(['actions[0].requiresApproval: must be true or false (a JSON boolean, not 1)']);
    expect(problemsOf(sql(true))).toEqual([]);
    expect(problemsOf(sql(false))).toEqual([]);
  });

  it('refuses two actions with one name', () => {
    const problems = problemsOf(
      JSON.stringify({
        actions: [
          { name: 'billing', type: 'sql', sql: 'SELECT $1' },
          { name: 'apps', type: 'sql', sql: 'SELECT $1' },
          { name: 'billing', type: 'webhook', url: 'https://hooks.example.com/x' },
        ],
      }),
    );
    expect(problems).toEqual([
      "actions[2].name: 'billing' is already the name of actions[0]; give every action its own name (it is part of the idempotency key)",
    ]);
  });

  it('keeps a webhook timeout below the re-enable activity timeout, which the workflow uses from the same constant', () => {
    expect(reenableActionTimeoutSeconds).toBe(120);
    expect(problemsOf(webhook({ timeoutSeconds: 600 }))).toEqual([
      `actions[0].timeoutSeconds: must be a number of seconds above 0 and below 120 (the re-enable activity's own timeout)`,
    ]);
    expect(problemsOf(webhook({ timeoutSeconds: 120 }))).toHaveLength(1);
    expect(problemsOf(webhook({ timeoutSeconds: 119 }))).toEqual([]);
    const steps = readFileSync(join(projectRootDir, 'workflows', 'activity-options.ts'), 'utf8');
    expect(steps).toMatch(
      /export const unitActions = proxyActivities<Activities>\(\{\n.*\n {2}heartbeatTimeout: reenableActionTimeoutSeconds \* 1000,/,
    );
  });

  it('validates a config object as it would a file (the worker checks what a workflow input carries)', () => {
    expect(() =>
      validateConfig(
        { actions: [{ name: 'a', type: 'sql', sql: 'SELECT 1', requiresApproval: 'false' }] },
        'the restore config',
      ),
    ).toThrow(/the restore config is not a valid restore config:\n {2}- actions\[0\]\.requiresApproval/);
    expect(validateConfig({ chunkRows: 10 })).toEqual({ chunkRows: 10 });
  });
});

describe('drill configs go through the same validation (item 8)', () => {
  const flags = {
    'backup-prefix': 's3://b/backups/',
    live: 'live',
    'tenant-root': 'app.tenants',
    sample: '3',
    server: 'postgres://scratch@scratch-host:5432/postgres',
  };
  const file = (config: unknown) => {
    const path = join(mkdtempSync(join(tmpdir(), 'drill-config-')), 'config.json');
    writeFileSync(path, JSON.stringify(config));
    return path;
  };

  it('refuses what a restore refuses, with the JSON path', () => {
    expect(() => drillInputFromFlags({ ...flags, config: file({ chunkRows: '1000' }) })).toThrow(
      /chunkRows: must be a positive integer/,
    );
    expect(() => drillInputFromFlags({ ...flags, config: file({ excludeTables: ['sessions'] }) })).toThrow(
      /excludeTables\[0\]: must be 'schema.table'/,
    );
    expect(() => drillInputFromFlags({ ...flags, config: file({ surprise: 1 }) })).toThrow(/surprise: unknown field/);
    expect(() =>
      drillInputFromFlags({
        ...flags,
        config: file({ actions: [{ name: 'h', type: 'webhook', url: 'https://u:p@h.example/' }] }),
      }),
    ).toThrow(/actions\[0\]\.url: carries credentials/);
    expect(
      drillInputFromFlags({ ...flags, config: file({ chunkRows: 1000, excludeTables: ['app.sessions'] }) }).config,
    ).toEqual({ chunkRows: 1000, excludeTables: ['app.sessions'] });
  });
});

describe('uuid tenant ids are one tenant whatever their case (item 8)', () => {
  const upper = 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11';
  const lower = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';

  it("normalizes to PostgreSQL's text form only for a uuid root key", () => {
    expect(normalizeTenantId(upper, 'uuid')).toBe(lower);
    expect(normalizeTenantId('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'uuid')).toBe(lower);
    expect(normalizeTenantId(upper, 'text')).toBe(upper);
    expect(normalizeTenantId('42', 'uuid')).toBe('42');
    expect(normalizeTenantId(upper, undefined)).toBe(upper);
  });

  it('finds a uuid listed twice in two cases, in the CLI and in the worker', () => {
    expect(tenantListProblems([upper, lower])).toEqual([
      `entry 2: tenant ${lower} is already listed at entry 1 as ${upper} (uuids are compared without regard to case)`,
    ]);
    expect(tenantListProblems([upper, 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'])).toEqual([]);
    expect(() => parseTenantList(`${upper},${lower}`, '--tenants')).toThrow(
      /tenant a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 is already listed at --tenants entry 1 as A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11 \(uuids are compared without regard to case\)/,
    );
  });
});

describe('who checks FKs is a choice (item 7b)', () => {
  it('reads TENANT_RESTORE_FK_CHECKS: engine, postgres or unset', () => {
    expect(fkChecksFromEnv({})).toBeUndefined();
    expect(fkChecksFromEnv({ TENANT_RESTORE_FK_CHECKS: 'postgres' })).toBe('postgres');
    expect(fkChecksFromEnv({ TENANT_RESTORE_FK_CHECKS: 'engine' })).toBe('engine');
    expect(() => fkChecksFromEnv({ TENANT_RESTORE_FK_CHECKS: 'off' })).toThrow(
      /TENANT_RESTORE_FK_CHECKS='off': use engine or postgres/,
    );
  });
});
