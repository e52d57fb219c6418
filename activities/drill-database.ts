/**
 * The drill database: its name, its marker, whose it is, and live's schema copied into it (pg_dump --schema-only into
 * pg_restore).
 */
import { qualifiedNamePattern } from './input-contract';
import { ApplicationFailure } from '@temporalio/common';
import { spawn } from 'node:child_process';
import { escapeIdentifier, libpqTarget, withDatabase, type DatabaseRef } from './db';
import { ownedDatabaseName, parseScratchMarker } from './scratch';

/**
 * `drill_<readable id>_<12 hex of sha256('drill-database:<exact id>')>`: drill ids that differ only in case or
 * punctuation (`Weekly.1`, `weekly-1`) get two databases, as restore ids get two scratches.
 */
export const drillDatabaseName = (drillId: string): string => ownedDatabaseName('drill', 'drill-database', drillId);

/** The COMMENT ON DATABASE of a drill database: whose it is, and whether live's schema is in yet. */
export interface DrillDatabaseMarker {
  tool: 'tenant-restore';
  kind: 'drill-database';
  drillId: string;
  state: 'creating' | 'ready';
  createdAt: string;
}

/** A database comment read as a drill database's marker: null when it is absent, not JSON, or anything else's. */
export function parseDrillDatabaseMarker(comment: string | null | undefined): DrillDatabaseMarker | null {
  if (!comment) return null;
  try {
    const marker = JSON.parse(comment) as DrillDatabaseMarker;
    return marker && typeof marker === 'object' && marker.tool === 'tenant-restore' && marker.kind === 'drill-database'
      ? marker
      : null;
  } catch {
    return null;
  }
}

/**
 * May this drill drop (and make again) the database of its name? Only when the marker names this drill, or when the
 * database has no comment at all and holds nothing (a crash between CREATE DATABASE and its COMMENT leaves exactly
 * that, and dropping an empty database loses nothing).
 */
export function drillDatabaseIsOwn(
  existing: { comment: string | null; marker: DrillDatabaseMarker | null; empty: boolean },
  drillId: string,
): boolean {
  if (existing.marker) return existing.marker.drillId === drillId;
  return existing.comment === null && existing.empty;
}

export function notOwnDrillDatabase(
  name: string,
  drillId: string,
  comment: string | null,
  doing: string,
): ApplicationFailure {
  const marker = parseDrillDatabaseMarker(comment);
  const whose = marker
    ? `the drill database of drill '${marker.drillId}'`
    : comment === null
      ? 'not a drill database (no marker, and it holds objects)'
      : parseScratchMarker(comment)
        ? 'a tenant-restore scratch, not a drill database'
        : 'not a drill database (its comment is no drill marker)';
  return ApplicationFailure.nonRetryable(
    `Refusing to ${doing} database ${name}: it is ${whose}, not the drill database of drill '${drillId}', and it was not touched. If it is no longer needed, drop it yourself (DROP DATABASE ${escapeIdentifier(name)}), or run the drill with another --id or another --server.`,
    'NotOwnDrillDatabase',
  );
}

/** A database on the same server as `ref`: for an alias `alias/db`, for a URL the same URL with another path. */
export function sibling(ref: DatabaseRef, database: string): DatabaseRef {
  return /^postgres(ql)?:\/\//.test(ref) ? withDatabase(ref, database) : `${ref.split('/')[0]}/${database}`;
}

/** `schema.table` by the input contract's one rule (a name may hold any character but a dot), each part quoted. */
export function qualified(name: string): string {
  if (!qualifiedNamePattern.test(name))
    throw ApplicationFailure.nonRetryable(`Tenant root '${name}' is not schema.table.`, 'InvalidInput');
  const [schema, table] = name.split('.') as [string, string];
  return `${escapeIdentifier(schema)}.${escapeIdentifier(table)}`;
}

/** pg_dump --schema-only of `from` piped into pg_restore of `to`; stderr of both is kept for the error message. */
export function copySchema(from: DatabaseRef, to: DatabaseRef, signal: AbortSignal): Promise<void> {
  const source = libpqTarget(from);
  const target = libpqTarget(to);
  return new Promise((resolve, reject) => {
    const dump = spawn(
      'pg_dump',
      ['-Fc', '--schema-only', '--no-owner', '--no-privileges', '--no-password', '-d', source.url],
      { env: source.env, signal, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const restore = spawn(
      'pg_restore',
      ['--no-owner', '--no-privileges', '--exit-on-error', '--no-password', '-d', target.url],
      { env: target.env, signal, stdio: ['pipe', 'ignore', 'pipe'] },
    );
    let errors = '';
    dump.stderr.on('data', (c: Buffer) => (errors += c.toString()));
    restore.stderr.on('data', (c: Buffer) => (errors += c.toString()));
    dump.stdout.pipe(restore.stdin);
    let pending = 2;
    let failed = false;
    const done = (tool: string) => (code: number | null) => {
      if (code !== 0 && !failed) {
        failed = true;
        reject(new Error(`${tool} exited with ${code}: ${errors.trim().slice(0, 2000)}`));
      }
      if (--pending === 0 && !failed) resolve();
    };
    dump.on('error', reject);
    restore.on('error', reject);
    dump.on('close', done('pg_dump --schema-only'));
    restore.on('close', done('pg_restore'));
  });
}
