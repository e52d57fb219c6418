/**
 * Session setup, written once for every step: how each kind of session begins (isolation and snapshot), and the
 * settings it runs under. `lock_timeout` and `statement_timeout` are not here: db.ts sends them as startup parameters
 * of every connection (sessionTimeouts), so that no session of the product, in a transaction or not, goes without them.
 */
import { assertScratchAlive } from '../scratch-alive';
import { canonicalTextSettings, type Pool, type PoolClient } from '../db';
import { EncodingMismatchError } from '../errors';
import type { YieldToLive } from '../live-pressure';
import type { Plan } from '../plan';
import { setTenantIdsSql } from '../plan/ownership';
import type { ConflictPolicy, TenantId } from '../restore-types';
import type { Sql } from './index';

export interface SessionOptions {
  /**
   * `snapshot`: REPEATABLE READ READ ONLY, every table read from one snapshot (scratch always; live while validating).
   * `snapshot-temp`: REPEATABLE READ, not READ ONLY, because a temporary table is still a CREATE (a partial tenant's
   * backup keys). `write`: a plain transaction (the copy's live side; preflight's temporary tables on live).
   */
  mode: 'snapshot' | 'snapshot-temp' | 'write';
  tenantIds: TenantId[];
  /** Row text identical on both servers, for hashes of rows to be comparable (preflight, validate). */
  canonicalText?: boolean;
  /** The copy's live transaction when the plan suspends triggers (plan.fkEnforcement 'replica'). */
  replicaRole?: boolean;
  /** The copy's live transaction: deferrable constraints (cycle strategy 'defer') are checked at COMMIT. */
  deferConstraints?: boolean;
}

const begin: Record<SessionOptions['mode'], string> = {
  snapshot: 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  'snapshot-temp': 'BEGIN ISOLATION LEVEL REPEATABLE READ',
  write: 'BEGIN',
};

/**
 * A restore's statements run without parallel workers: on live's server (scratch usually shares it) the CPUs belong to
 * the tenants that keep writing, and a restore spreads its load over the window's concurrency instead. And without
 * JIT: the cross-tenant checks are estimated expensive, so PostgreSQL JIT-compiled them, ~0.4-0.5 s per unit for
 * ~0.06 s of work.
 */
const plannerSettings: Sql = { text: 'SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off' };

/**
 * Session settings that make row text identical on two servers: hashes of rows can be compared (preflight, validate,
 * discover), and the copy's `COPY ... TO STDOUT` text on scratch reads back as the same values in `COPY ... FROM STDIN`
 * on live. Every connection already has them as startup parameters (db.ts canonicalTextSettings, which outrank ALTER
 * DATABASE and ALTER ROLE settings); SET LOCAL repeats them for the transaction, so that a URL with its own
 * `?options=` cannot undo them either. Constants, not input.
 */
const canonicalText: Sql = {
  text: Object.entries(canonicalTextSettings)
    .map(([name, value]) => `SET LOCAL ${name} = '${value}'`)
    .join('; '),
};

/**
 * Only this transaction: user triggers (which would rewrite a restored row, as Pagila's last_updated does) and FK
 * triggers stay on for every other session (other tenants writing). The engine then checks FKs itself (orphans.ts).
 */
const replicaRole: Sql = { text: 'SET LOCAL session_replication_role = replica' };

const deferConstraints: Sql = { text: 'SET CONSTRAINTS ALL DEFERRED' };

/**
 * The tenants of the transaction, in a setting: ownership predicates that cannot inline them read it (COPY takes no
 * parameters, a setting can be set with one).
 */
function setTenantIds(tenantIds: TenantId[]): Sql {
  return { text: setTenantIdsSql, values: [tenantIds] };
}

/** The statements that open a session of the given kind, in order. */
export function sessionSetup(options: SessionOptions): Sql[] {
  return [
    { text: begin[options.mode] },
    plannerSettings,
    ...(options.canonicalText ? [canonicalText] : []),
    ...(options.replicaRole ? [replicaRole] : []),
    ...(options.deferConstraints ? [deferConstraints] : []),
    setTenantIds(options.tenantIds),
  ];
}

/** A client of `pool` in a transaction opened by `setup`; on a failed setup the client is dropped, not reused. */
export async function openSession(pool: Pool, setup: Sql[]): Promise<PoolClient> {
  const client = await pool.connect();
  try {
    for (const statement of setup) await client.query(statement);
    return client;
  } catch (error) {
    client.release(true);
    throw error;
  }
}

/**
 * Rolls the session back and returns its client to the pool. A session that failed (`broken`) may be in an unknown
 * protocol state (a COPY interrupted mid-stream): it is dropped without a ROLLBACK, which such a connection may never
 * answer (the server rolls back when the connection closes). One whose ROLLBACK fails is dropped too.
 */
export async function closeSession(client: PoolClient, broken = false): Promise<void> {
  if (broken) {
    client.release(true);
    return;
  }
  let drop = false;
  await client.query('ROLLBACK').catch(() => (drop = true));
  client.release(drop);
}

/** What a step that compares scratch with live is given (preflight, validate). */
export interface ComparedStepInput {
  scratch: Pool;
  live: Pool;
  plan: Plan;
  tenantId: TenantId;
  /** A group of tenants handled together (set-based); the result then sums over the group. Default: [tenantId]. */
  tenantIds?: TenantId[];
  conflict: ConflictPolicy;
  yieldToLive?: YieldToLive;
}

/**
 * A snapshot of scratch (read-only unless `scratchMode` says otherwise: discover keeps live's rows in a temporary table
 * there) and a session of live, both in the canonical text settings (preflight, validate, discover), both always
 * rolled back: nothing is written to any live table.
 */
export async function withComparedSessions<T>(
  pools: { scratch: Pool; live: Pool },
  tenantIds: TenantId[],
  liveMode: SessionOptions['mode'],
  fn: (scratch: PoolClient, live: PoolClient) => Promise<T>,
  scratchMode: SessionOptions['mode'] = 'snapshot',
): Promise<T> {
  const scratch = await openSession(pools.scratch, sessionSetup({ mode: scratchMode, canonicalText: true, tenantIds }));
  let live: PoolClient | undefined;
  let broken = false;
  try {
    // A scratch emptied by crash recovery (its tables are unlogged) is never read as the backup.
    await assertScratchAlive(scratch);
    live = await openSession(pools.live, sessionSetup({ mode: liveMode, canonicalText: true, tenantIds }));
    return await fn(scratch, live);
  } catch (error) {
    broken = true;
    throw error;
  } finally {
    await closeSession(scratch, broken);
    if (live) await closeSession(live, broken);
  }
}

/** A database's server encoding, and its name for a message. */
async function encodingOf(db: Pool | PoolClient): Promise<{ encoding: string; database: string }> {
  const { rows } = await (db as Pool).query<{ encoding: string; database: string }>(
    "SELECT current_setting('server_encoding') AS encoding, current_database() AS database",
  );
  return rows[0]!;
}

/**
 * Scratch and live must store text in the same server encoding. The copy moves rows as text, and validation compares
 * hashes of each server's row text: between a UTF8 scratch and a LATIN1 live, every character outside ASCII would
 * either be converted (and then every checksum of a row holding one differ) or, without a pinned client_encoding, arrive
 * as other characters (a UTF8 `é` stored as LATIN1 `Ã©`) and be reported as restored. So the restore refuses, at plan
 * time (plan/index.ts) and again when a copy starts, before anything is written to live. Converting instead would need
 * every comparison made in one encoding; refusing is simpler and says what to do.
 */
export async function assertSameEncoding(scratch: Pool | PoolClient, live: Pool | PoolClient): Promise<void> {
  const [s, l] = await Promise.all([encodingOf(scratch), encodingOf(live)]);
  if (s.encoding === l.encoding) return;
  throw new EncodingMismatchError(
    `The scratch database ${s.database} (the backup) is encoded in ${s.encoding}, and live (${l.database}) in ${l.encoding}. ` +
      `Rows go from one to the other as text and are checked by comparing each server's text of them, so a character outside ASCII ` +
      `would not arrive as it was, or not compare equal. Nothing was written to live. Load the backup into a scratch database with live's encoding ` +
      `(CREATE DATABASE <name> ENCODING '${l.encoding}' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0, then pg_restore into it) ` +
      `and start again with --scratch <that database>.`,
    { scratchEncoding: s.encoding, liveEncoding: l.encoding },
  );
}
