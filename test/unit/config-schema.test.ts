/**
 * The config file's one schema (activities/config.ts): `tenant-restore config schema` prints its JSON Schema, which
 * docs/restore-config.schema.json holds for editors (this test keeps the two equal), `config check` checks a file, a
 * config may name its schema with `$schema`, and unknown fields are refused wherever they are.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  checkConfigFile,
  configProblems,
  loadConfig,
  restoreConfigJsonSchema,
  validateConfig,
} from '../../activities/config';
import { reenableActionTimeoutSeconds } from '../../activities/restore-types';

const root = join(__dirname, '..', '..');
const schemaFile = join(root, 'docs', 'restore-config.schema.json');
const workloadConfig = join(root, 'scripts', 'workload', 'restore-config.json');

/** The CLI from its TypeScript source (as bin/tenant-restore runs it without dist/): what an operator runs. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(
      process.execPath,
      ['--require', require.resolve('tsx/cjs'), join(root, 'cli', 'main.ts'), ...args],
      { cwd: root },
    );
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout: string; stderr: string };
    return { code: e.code ?? 1, stdout: e.stdout, stderr: e.stderr };
  }
}

const file = (content: unknown) => {
  const path = join(mkdtempSync(join(tmpdir(), 'config-check-')), 'config.json');
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
};

describe('config schema', () => {
  it('prints the JSON Schema that docs/restore-config.schema.json holds (regenerate it with `tenant-restore config schema > docs/restore-config.schema.json`)', async () => {
    const run = await cli(['config', 'schema']);
    expect(run.code, run.stderr).toBe(0);
    expect(readFileSync(schemaFile, 'utf8')).toBe(run.stdout);
    expect(JSON.parse(run.stdout)).toEqual(restoreConfigJsonSchema());
  });

  it('says to editors what the validation says: known fields only, the action types, the bounds', () => {
    const schema = restoreConfigJsonSchema() as {
      $schema: string;
      additionalProperties: boolean;
      properties: Record<string, { items?: { oneOf?: Array<Record<string, unknown>> } }>;
    };
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(schema.properties)).toEqual([
      'logicalForeignKeys',
      'excludeTables',
      'chunkRows',
      'actions',
      '$schema',
    ]);
    const [sql, webhook] = schema.properties.actions!.items!.oneOf! as Array<{
      additionalProperties: boolean;
      properties: Record<string, Record<string, unknown>>;
    }>;
    expect(sql!.properties.type).toMatchObject({ const: 'sql' });
    expect(webhook!.properties.type).toMatchObject({ const: 'webhook' });
    expect(webhook!.additionalProperties).toBe(false);
    expect(webhook!.properties.timeoutSeconds).toMatchObject({
      exclusiveMinimum: 0,
      exclusiveMaximum: reenableActionTimeoutSeconds,
    });
    expect(webhook!.properties.method).toMatchObject({ enum: ['POST', 'PUT'] });
  });
});

describe('$schema in a config file', () => {
  it('is accepted, and not carried into the restore', () => {
    expect(validateConfig({ $schema: './restore-config.schema.json', chunkRows: 5 })).toEqual({ chunkRows: 5 });
    expect(configProblems({ $schema: 5 })).toEqual(['$schema: must be a string']);
  });

  it("the workload's config names the committed schema, and is valid", () => {
    const { $schema } = JSON.parse(readFileSync(workloadConfig, 'utf8')) as { $schema: string };
    expect(existsSync(join(dirname(workloadConfig), $schema))).toBe(true);
    expect(join(dirname(workloadConfig), $schema)).toBe(schemaFile);
    expect(loadConfig(workloadConfig).chunkRows).toBe(200000);
  });
});

describe('one schema, every problem at once', () => {
  it('refuses unknown fields of actions and logical FKs too, naming the known ones (a typo is not ignored)', () => {
    expect(
      configProblems({
        actions: [{ name: 'billing', type: 'sql', sql: 'SELECT $1', requiresAproval: true }],
        logicalForeignKeys: [{ from: 'a.b', to: 'a.c', columns: ['x'], referencedColumns: ['id'], note: 'x' }],
      }),
    ).toEqual([
      'actions[0].requiresAproval: unknown field (known: name, type, sql, requiresApproval)',
      'logicalForeignKeys[0].note: unknown field (known: from, columns, to, referencedColumns)',
    ]);
  });

  it('lists the problems in the order of the file, those of an action of unknown type included', () => {
    expect(
      configProblems({
        surprise: 1,
        chunkRows: 0,
        actions: [
          { name: '', type: 'ftp', requiresApproval: 'yes' },
          { name: 'a', type: 'webhook', url: 'https://h.example/', method: 'GET', headers: { 'X-Api-Key': 'k' } },
          { name: 'a', type: 'sql', sql: ' ' },
          7,
        ],
      }),
    ).toEqual([
      'surprise: unknown field (known: logicalForeignKeys, excludeTables, chunkRows, actions, $schema)',
      'chunkRows: must be a positive integer',
      "actions[0].type: must be 'sql' or 'webhook'",
      'actions[0].name: must be a non-empty string',
      'actions[0].requiresApproval: must be true or false (a JSON boolean, not "yes")',
      'actions[1].method: must be POST or PUT',
      "actions[1].headers.X-Api-Key: looks like a secret and must be given as 'env:NAME' (NAME: a variable of the worker's environment named TENANT_RESTORE_WEBHOOK_*), so that its value is in neither the config nor workflow history",
      'actions[2].sql: must be a SQL statement',
      "actions[2].name: 'a' is already the name of actions[1]; give every action its own name (it is part of the idempotency key)",
      'actions[3]: must be an object',
    ]);
  });

  it('names what is wrong with a logical FK, and compares the column counts even when another field is wrong', () => {
    expect(
      configProblems({
        logicalForeignKeys: [
          { from: 'a', to: 'app.b', columns: ['x', 'y'], referencedColumns: ['id'] },
          { from: 'app.a', to: 'app.b', columns: [], referencedColumns: [''] },
          'app.a',
        ],
        excludeTables: 'app.sessions',
      }),
    ).toEqual([
      "logicalForeignKeys[0].from: must be 'schema.table'",
      'logicalForeignKeys[0]: columns and referencedColumns must have the same length',
      'logicalForeignKeys[1].columns: must be a non-empty array of column names',
      'logicalForeignKeys[1].referencedColumns[0]: must be a column name',
      'logicalForeignKeys[2]: must be an object',
      'excludeTables: must be an array',
    ]);
  });
});

describe('config check', () => {
  it('prints ok for a valid file (exit 0), and every problem with its JSON path otherwise (exit 2)', async () => {
    const ok = await cli(['config', 'check', workloadConfig]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('ok\n');
    const bad = file({ chunkRows: -1, actions: [{ name: 'h', type: 'webhook', url: 'ftp://h.example/' }] });
    const text = await cli(['config', 'check', bad]);
    expect(text.code).toBe(2);
    expect(text.stdout).toBe(
      `${bad} is not a valid restore config:\n  - chunkRows: must be a positive integer\n  - actions[0].url: must be an http(s) URL\n`,
    );
    const json = await cli(['config', 'check', bad, '--output', 'json']);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({
      file: bad,
      ok: false,
      problems: ['chunkRows: must be a positive integer', 'actions[0].url: must be an http(s) URL'],
    });
    const usage = await cli(['config', 'check']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/expected 'schema', or 'check <file>'/);
  });

  it('reports a file that is not JSON, not an object, or not there, as one problem', () => {
    expect(checkConfigFile(file('{'))).toMatchObject({
      ok: false,
      problems: [expect.stringMatching(/is not valid JSON/)],
    });
    expect(checkConfigFile(file('[]'))).toMatchObject({
      ok: false,
      problems: [expect.stringMatching(/must be a JSON object/)],
    });
    expect(checkConfigFile('/nonexistent/config.json')).toMatchObject({
      ok: false,
      problems: [expect.stringMatching(/^cannot read config file \/nonexistent\/config.json/)],
    });
    expect(checkConfigFile(file({ excludeTables: ['app.sessions'] }))).toEqual({
      file: expect.any(String),
      ok: true,
      problems: [],
      message: 'ok',
    });
  });
});
