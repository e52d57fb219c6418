/**
 * What `when` reads: the tenants' root rows in the recovered scratch (the root's key, its relation path in the WAL),
 * and pg_waldump's records of the archive from there.
 */
import { ApplicationFailure } from '@temporalio/common';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { escapeIdentifier, type Pools } from './db';
import { postgresBin } from './point-in-time';

interface ScratchFacts {
  key: string;
  keyType: string;
  rel: string;
  timeline: number;
  segmentSize: number;
  nextXid: number;
  rows: Array<{ id: string; ctid: string }>;
}

/** The root's single-column primary key, its relation path in the WAL, and the requested tenants' root rows. */
export async function readScratch(pools: Pools, url: string, root: string, tenants: string[]): Promise<ScratchFacts> {
  const pool = pools.get(url, { max: 1, applicationName: 'tenant-restore when' });
  const [schema, table] = root.split('.') as [string, string];
  const { rows: meta } = await pool.query<{
    key: string | null;
    keys: number;
    keyType: string | null;
    tablespace: string;
    database: string;
    filenode: string | null;
    kind: string;
    timeline: number;
    segmentSize: string;
    nextXid: string;
  }>(
    // The root's identity from the catalog (never from the input's text), and what the WAL calls it:
    // rel <tablespace>/<database>/<relfilenode>, the tablespace being the database's default when reltablespace is 0.
    `SELECT (array_agg(a.attname::text))[1] AS key, count(a.attname)::int AS keys,
            (array_agg(format_type(a.atttypid, a.atttypmod)))[1] AS "keyType",
            COALESCE(NULLIF(c.reltablespace, 0), d.dattablespace)::text AS tablespace, d.oid::text AS database,
            pg_relation_filenode(c.oid)::text AS filenode, c.relkind::text AS kind,
            (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline,
            (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') AS "segmentSize",
            (pg_snapshot_xmax(pg_current_snapshot())::text::numeric % 4294967296)::text AS "nextXid"
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_database d ON d.datname = current_database()
       LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
       LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
      WHERE n.nspname = $1 AND c.relname = $2
      GROUP BY c.oid, c.reltablespace, d.dattablespace, d.oid, c.relkind`,
    [schema, table],
  );
  const m = meta[0];
  if (!m)
    throw ApplicationFailure.nonRetryable(
      `--tenant-root ${root} is not a table of the recovered database`,
      'WhenRefused',
    );
  if (m.kind !== 'r' || !m.filenode)
    throw ApplicationFailure.nonRetryable(
      `--tenant-root ${root} is not a plain table (relkind ${m.kind}): when follows the heap records of one relation`,
      'WhenRefused',
    );
  if (m.keys !== 1 || !m.key || !m.keyType)
    throw ApplicationFailure.nonRetryable(
      `--tenant-root ${root} has ${m.keys ? `a ${m.keys}-column` : 'no'} primary key: when needs the tenant id as its single-column primary key`,
      'WhenRefused',
    );
  // The key type comes from format_type (the catalog's own spelling); the identifiers are quoted.
  const { rows } = await pool.query<{ id: string; ctid: string }>(
    `SELECT ${escapeIdentifier(m.key)}::text AS id, ctid::text AS ctid
       FROM ${escapeIdentifier(schema)}.${escapeIdentifier(table)}
      WHERE ${escapeIdentifier(m.key)} = ANY($1::${m.keyType}[])`,
    [tenants],
  );
  await pools.close(url);
  return {
    key: m.key,
    keyType: m.keyType,
    rel: `${m.tablespace}/${m.database}/${m.filenode}`,
    timeline: m.timeline,
    segmentSize: Number(m.segmentSize),
    nextXid: Number(m.nextXid),
    rows,
  };
}

/** True when xid a comes before b (32-bit xids compare modulo 2^32, as PostgreSQL compares them). */
export const xidBefore = (a: number, b: number) => ((a - b) | 0) < 0;

/**
 * Runs pg_waldump over the fetched segments from `from` on `timeline`, feeding each line to `onLine` as it comes: the
 * output of hours of WAL is never held. pg_waldump ends with an error at the end of the WAL it has (the zeros after
 * a segment switch, or the next segment missing): that is where the archive ends. Returns its last stderr lines.
 */
export async function waldump(
  dir: string,
  timeline: number,
  from: string,
  signal: AbortSignal,
  onLine: (line: string) => void,
): Promise<string> {
  const child = spawn(join(postgresBin(), 'pg_waldump'), ['-p', dir, '-t', String(timeline), '-s', from], {
    // Commit times in UTC, whatever the worker's zone: they are parsed as such.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: 'UTC', LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const abort = () => child.kill('SIGTERM');
  signal.addEventListener('abort', abort, { once: true });
  let err = '';
  child.stderr.on('data', (chunk: Buffer) => (err = `${err}${chunk.toString()}`.slice(-4000)));
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', () => resolve());
  });
  try {
    for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) onLine(line);
    await exited;
  } finally {
    signal.removeEventListener('abort', abort);
  }
  if (signal.aborted) throw signal.reason ?? new Error('cancelled');
  return err.trim();
}
