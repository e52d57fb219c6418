/**
 * Where a backup is loaded (a restore's scratch, a drill's database), as the flags say it: the server, and the risks
 * of loading it there that the operator accepted (activities/scratch-server.ts holds the rules; the worker checks
 * again on the servers themselves).
 */
import {
  scratchPlacementRefusal,
  scratchRiskFlag,
  scratchRisks,
  scratchServerVariable,
  type ScratchRisk,
} from '../../activities/scratch-server';
import type { BulkRestoreInput } from '../../workflows/definitions';
import { checkDatabaseRef, isPostgresUrl, UsageError } from './input';

/** Host and port of a URL reference, or the alias of an alias reference: what tells two servers apart. */
function serverOf(ref: string): string {
  if (!isPostgresUrl(ref)) return `alias:${ref.split('/')[0]}`;
  const url = new URL(ref);
  return `${decodeURIComponent(url.hostname).toLowerCase()}:${url.port || '5432'}`;
}

/**
 * A scratch loaded from --backup goes to --scratch-server, by default live's own server: the whole backup then loads
 * next to production (its CPU, disk and connections), and live's role needs CREATEDB, which the least-privilege role
 * of scripts/grants.sql does not have. Said loudly, not refused: a small database on a single server may accept it.
 */
export function scratchOnLiveWarning(input: Pick<BulkRestoreInput, 'source' | 'live'>): string | undefined {
  if (input.source.kind !== 'backup') return undefined;
  const scratchServer = input.source.scratchServer ?? input.live;
  if (serverOf(scratchServer) !== serverOf(input.live)) return undefined;
  const how = input.source.scratchServer
    ? '--scratch-server is the same server as --live'
    : 'no --scratch-server was given';
  return `the scratch database will be created on LIVE's server (${how}): the whole backup is loaded next to production, and the role used needs CREATEDB there (the least-privilege live role of scripts/grants.sql has none, so the restore would fail). Put scratch elsewhere with --scratch-server postgres://<scratch role>@<other host>:<port>/postgres, or give --scratch <url> of a database you restored yourself.`;
}

/** The risks of loading the backup that the operator accepted, one flag each (activities/scratch-server.ts). */
export function unsafeScratchFromFlags(flags: object): ScratchRisk[] {
  const given = flags as Record<string, unknown>;
  return scratchRisks.filter((risk) => given[scratchRiskFlag[risk].slice(2)] === true);
}

/**
 * Where scratch is loaded, from --scratch-server, else the configured default (TENANT_RESTORE_SCRATCH_SERVER), else
 * live's own server, which is refused (exit 2) unless accepted by flag, as is a scratch server on live's host:port or
 * with live's user. The worker checks again on the servers themselves.
 */
export function scratchServerFromFlags(
  flag: string,
  given: string | undefined,
  live: string,
  unsafeScratch: ScratchRisk[],
  env: NodeJS.ProcessEnv,
): string | undefined {
  const configured = env[scratchServerVariable]?.trim();
  const server = given
    ? checkDatabaseRef(flag, given)
    : configured
      ? checkDatabaseRef(`${flag} (from ${scratchServerVariable})`, configured)
      : undefined;
  const refusal = scratchPlacementRefusal(live, server, unsafeScratch, env);
  if (refusal) throw new UsageError(`refused: ${refusal} Nothing was started.`);
  return server;
}
