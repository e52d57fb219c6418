/**
 * Where a backup may be loaded. A pg_dump archive is code for the role that loads it: a CHECK constraint, a default or
 * an index expression of the archive calls functions of the archive while pg_restore copies its rows, and those run as
 * the restoring role, on the scratch server. So scratch belongs on a separate, unprivileged server and role:
 *
 * - not live's server: there the archive's code runs next to production (its CPU, disk, connections, every database
 *   that grants CONNECT to PUBLIC), and with live's role it can `ALTER ROLE CURRENT_USER SET ...` (say
 *   default_transaction_read_only, or session_replication_role where the role may set it) or change the role's
 *   password: every later session of the restore, and of anything else using that role, is then the archive's;
 * - not as live's role (the same `current_user`), whatever the server: the same name is, in practice, the same
 *   credentials and grants;
 * - not as a role that can reach the scratch host's operating system: a superuser, a member of
 *   pg_execute_server_program, pg_read_server_files or pg_write_server_files (`COPY ... TO PROGRAM`, server files), or
 *   a role with CREATEROLE (on PostgreSQL 15 and older it may grant itself those roles).
 *
 * Each is refused unless the operator accepts that risk by its own flag (`unsafeScratch` in workflow inputs).
 *
 * "The same server" is decided on the connections themselves, not on host names (an alias, a DNS name, a pooler and
 * 127.0.0.1 may all reach one server): two sessions are on the same running server when `pg_postmaster_start_time()`
 * (any role may call it; microseconds) is equal and, where both roles may read it, `pg_control_system()`'s
 * system_identifier too. A point-in-time copy of live recovered elsewhere has live's system identifier but its own
 * start time: it is another server. The command line, which holds no database credentials, compares host:port and
 * user of the references (`scratchPlacementProblems`); the worker compares the servers (`checkScratchServer`).
 */
import { ApplicationFailure } from '@temporalio/common';
import { resolveConnectionString, type DatabaseRef, type Pools } from './db';

/** A risk of loading a backup an operator may accept, each with its own flag. */
export type ScratchRisk = 'on-live-server' | 'as-live-role' | 'as-superuser';
export const scratchRisks: readonly ScratchRisk[] = ['on-live-server', 'as-live-role', 'as-superuser'];
export const scratchRiskFlag: Record<ScratchRisk, string> = {
  'on-live-server': '--unsafe-scratch-on-live-server',
  'as-live-role': '--unsafe-scratch-as-live-role',
  'as-superuser': '--unsafe-scratch-as-superuser',
};
/** The error type of each refusal (non-retryable; exit 2 with --wait). */
export const scratchRiskError: Record<ScratchRisk, string> = {
  'on-live-server': 'ScratchOnLiveServer',
  'as-live-role': 'ScratchAsLiveRole',
  'as-superuser': 'ScratchRolePrivileged',
};

/** The variable that names the command line's default scratch server (an alias or a URL without password). */
export const scratchServerVariable = 'TENANT_RESTORE_SCRATCH_SERVER';

const whatToDo = `Give --scratch-server a PostgreSQL server of its own with a role that has CREATEDB and nothing else (no superuser, no CREATEROLE, no pg_*_server_* role, nothing in live; the command line's default is ${scratchServerVariable})`;

/** What one session tells about its server and role. */
export interface SessionFacts {
  startedAt: string;
  systemId?: string;
  user: string;
  superuser: boolean;
  createRole: boolean;
  /** The predefined roles that reach the host's files or programs, that this role is a member of. */
  hostRoles: string[];
}

const factsSql = `
SELECT to_char(pg_postmaster_start_time() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS started,
       current_user AS "user",
       r.rolsuper AS superuser,
       r.rolcreaterole AS createrole,
       ARRAY(SELECT p FROM unnest(ARRAY['pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files']) p
             WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p) AND pg_has_role(current_user, p, 'MEMBER')) AS host_roles
FROM pg_roles r WHERE r.rolname = current_user`;

/** Reads the facts of a session on `ref`. The system identifier only when this role may read pg_control_system(). */
export async function sessionFacts(pools: Pools, ref: DatabaseRef): Promise<SessionFacts> {
  const pool = pools.get(ref);
  const { rows } = await pool.query<{
    started: string;
    user: string;
    superuser: boolean;
    createrole: boolean;
    host_roles: string[];
  }>(factsSql);
  const row = rows[0]!;
  let systemId: string | undefined;
  try {
    const control = await pool.query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()');
    systemId = control.rows[0]?.id;
  } catch {
    systemId = undefined; // not granted to this role: the start time decides alone
  }
  return {
    startedAt: row.started,
    systemId,
    user: row.user,
    superuser: row.superuser,
    createRole: row.createrole,
    hostRoles: row.host_roles,
  };
}

/** One refusal: its risk, its error type and its message. */
export interface ScratchProblem {
  risk: ScratchRisk;
  type: string;
  message: string;
}

/** The same running server: the same start time, and the same system identifier where both could read it. */
export function sameServer(a: SessionFacts, b: SessionFacts): boolean {
  if (a.startedAt !== b.startedAt) return false;
  return !(a.systemId && b.systemId && a.systemId !== b.systemId);
}

/**
 * What is wrong with loading a backup as `scratch` while live is `live`, given the risks the operator accepted. Pure:
 * the worker reads the facts, the tests read the verdicts.
 */
export function scratchServerProblems(
  refs: { live: DatabaseRef; server: DatabaseRef },
  live: SessionFacts,
  scratch: SessionFacts,
  accepted: readonly ScratchRisk[] = [],
): ScratchProblem[] {
  const problems: ScratchProblem[] = [];
  const add = (risk: ScratchRisk, message: string) => {
    if (!accepted.includes(risk)) problems.push({ risk, type: scratchRiskError[risk], message });
  };
  if (sameServer(live, scratch))
    add(
      'on-live-server',
      `Scratch would be loaded on live's own PostgreSQL server: the scratch server ${refs.server} and live ${refs.live} reach the same running server (started ${scratch.startedAt}${scratch.systemId && live.systemId ? `, system identifier ${scratch.systemId}` : ''}), so the archive's code would run next to production.`,
    );
  if (live.user === scratch.user)
    add(
      'as-live-role',
      `Scratch would be loaded as live's role '${scratch.user}' (the scratch server's session and live's have the same current_user): an archive's function could ALTER ROLE ${scratch.user} (its settings, its password) for every later session of the restore on live.`,
    );
  const powers = [
    ...(scratch.superuser ? ['is a superuser'] : []),
    ...(scratch.createRole ? ['has CREATEROLE (it may grant itself pg_execute_server_program)'] : []),
    ...(scratch.hostRoles.length ? [`is a member of ${scratch.hostRoles.join(', ')}`] : []),
  ];
  if (powers.length)
    add(
      'as-superuser',
      `The scratch role '${scratch.user}' on ${refs.server} ${powers.join(', and ')}: with it an archive's function can run programs or read and write files on the scratch server's host (COPY ... TO PROGRAM).`,
    );
  return problems;
}

/** One message for the refusals: what is wrong, why it matters, what to do, and the flags that accept it. */
export function scratchRefusalMessage(problems: ScratchProblem[]): string {
  return `${problems.map((p) => p.message).join(' ')} A backup is code for the role that loads it (a CHECK constraint or default of the archive runs its own functions during pg_restore). Nothing was created or loaded. ${whatToDo}; or, if you accept ${problems.length > 1 ? 'these risks' : 'that risk'}, start again with ${problems.map((p) => scratchRiskFlag[p.risk]).join(' ')}.`;
}

/**
 * The worker's check, before a database is created on the scratch server: refuses (non-retryable, the first problem
 * as the failure, every problem in its message) a scratch on live's server, as live's role, or as a role that reaches
 * the host, unless accepted. `live` absent: an input from before this check, which cannot be judged, is refused.
 */
export async function checkScratchServer(
  pools: Pools,
  input: { live?: DatabaseRef; server: DatabaseRef; unsafeScratch?: readonly ScratchRisk[] },
): Promise<{ accepted: ScratchProblem[] }> {
  if (!input.live)
    throw ApplicationFailure.nonRetryable(
      `This scratch request names no live database, so it cannot be checked that the backup is not loaded on live's server or as live's role (a workflow started by an earlier release?). Start the restore again.`,
      'ScratchOnLiveServer',
    );
  const accepted = (input.unsafeScratch ?? []).filter((r): r is ScratchRisk => scratchRisks.includes(r));
  const [live, scratch] = await Promise.all([sessionFacts(pools, input.live), sessionFacts(pools, input.server)]);
  const problems = scratchServerProblems({ live: input.live, server: input.server }, live, scratch, accepted);
  if (problems.length) throw ApplicationFailure.nonRetryable(scratchRefusalMessage(problems), problems[0]!.type);
  return { accepted: scratchServerProblems({ live: input.live, server: input.server }, live, scratch, []) };
}

// ---------------------------------------------------------------------------------------------------------------
// the command line's check, on the references alone (it holds no database credentials)

const loopback = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** host:port and user of a reference, resolved through this process's aliases when it can; undefined parts unknown. */
function describeRef(ref: DatabaseRef, env: NodeJS.ProcessEnv): { server: string; user?: string } {
  let url: URL;
  try {
    url = new URL(resolveConnectionString(ref, env));
  } catch {
    return { server: `alias:${ref.split('/')[0]!.toLowerCase()}` };
  }
  let host = decodeURIComponent(
    url.hostname || url.searchParams.get('host') || env.PGHOST || 'localhost',
  ).toLowerCase();
  if (loopback.has(host)) host = 'loopback';
  const port = url.port || url.searchParams.get('port') || env.PGPORT || '5432';
  const user = decodeURIComponent(url.username) || url.searchParams.get('user') || env.PGUSER || undefined;
  return { server: `${host}:${port}`, user };
}

/**
 * The command line's check of where scratch goes: `server` undefined means live's own server. Same host:port (after
 * resolving the aliases this process knows; loopback names are one host), or the same user in both references, is
 * refused unless accepted. Returns the refusal, or undefined. The worker checks again, on the servers themselves.
 */
export function scratchPlacementRefusal(
  live: DatabaseRef,
  server: DatabaseRef | undefined,
  accepted: readonly ScratchRisk[],
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const l = describeRef(live, env);
  const s = server ? describeRef(server, env) : l;
  const risks: ScratchRisk[] = [];
  const said: string[] = [];
  if (!server || l.server === s.server) {
    risks.push('on-live-server');
    said.push(
      server
        ? `on live's server (--scratch-server ${server} and --live are both ${s.server.replace(/^loopback/, 'localhost')})`
        : `on live's server (no --scratch-server was given, and ${scratchServerVariable} is not set)`,
    );
  }
  if (!server || (l.user !== undefined && l.user === s.user)) {
    risks.push('as-live-role');
    said.push(`as live's role${l.user ? ` '${l.user}'` : ''}${server ? ' (the same user in both references)' : ''}`);
  }
  const refused = risks.filter((risk) => !accepted.includes(risk));
  if (refused.length === 0) return undefined;
  return `the backup would be loaded ${said.join(' and ')}. A backup is code for the role that loads it: a CHECK constraint of the archive runs its own functions during pg_restore, and as live's role it can ALTER ROLE it for every later session on live. ${whatToDo}; or, if you accept that risk, add ${refused.map((r) => scratchRiskFlag[r]).join(' ')}.`;
}
