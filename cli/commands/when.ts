/** `tenant-restore when`: which commits deleted some tenants' root rows, read from the WAL archive. */
import type { WhenResult } from '../../activities/when-contract';
import { UsageError } from '../client/errors';
import { exitCodes, parseFlags, print, type Command, type Flags } from './common';

// The clients load when the command runs: `when --help` stays clear of the Temporal client and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const connection = () => require('../client/connection') as typeof import('../client/connection');
const finding = () => require('../client/when') as typeof import('../client/when');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage = `tenant-restore when --backup pgbackrest:<stanza>[/<db>] --live <url|alias> --tenant-root <schema.table>
                    (--tenants 1,2,3 | --tenants-file <path>) [--since <time|LSN>] [--id <whenId>]
                    [--task-queue <name>] [--json]

Finds the commits that deleted these tenants' root rows, from the WAL archive: a point-in-time scratch is recovered
at --since on a worker's host, each tenant's root row is located there, then the archived WAL from that point to the
end of the archive is read with pg_waldump, following each row through its updates to the DELETE whose transaction
committed. It prints per tenant the deleting transaction (xid), its commit time and commit LSN, and the incident
window: T0, the first record of the first deleting transaction (recovering to it still holds every victim), and T1,
the commit of the last one. Give them to discover and start:
  tenant-restore discover --backup pgbackrest:<stanza>/<db> --from <T0> --to <T1> ...
Nothing is written but the scratch on the worker's host, which is stopped and removed at the end. Live is not read.

  --backup          pgbackrest:<stanza>[/<database>]: the WAL archive (database default: live's)
  --live            live (its database name is the default database; the workers resolve aliases)
  --tenant-root     the table whose single-column primary key is the tenant id
  --tenants, --tenants-file   the deleted tenants to look for (as for start)
  --since           where to start reading: an RFC 3339 time with its zone or an LSN, as start --at, before the
                    deletions (default: the end of the oldest backup of the stanza: every tenant must have a root row
                    there). The earlier, the more WAL is read
  --id              the id (workflow when/<id>; default w-<time>-<random>)
  --task-queue      the workers' task queue (default TENANT_RESTORE_TASK_QUEUE or tenant-restore)
  --json            the result as JSON

exit codes: 0 found (some tenants may be reported not deleted) | 1 none of the tenants was deleted in the archive
            | 2 bad input, or refused (a tenant already gone at --since, --since outside the archive)
            | 3 a service unreachable`;

const flags = {
  backup: { type: 'string' },
  live: { type: 'string' },
  'tenant-root': { type: 'string' },
  tenants: { type: 'string' },
  'tenants-file': { type: 'string', file: true },
  since: { type: 'string' },
  id: { type: 'string' },
  'task-queue': { type: 'string' },
  json: { type: 'boolean' },
} satisfies Flags;

/** `pgbackrest:<stanza>/<db>`, always with the database, for the discover line the operator copies. */
const backupOf = (r: WhenResult) => `pgbackrest:${r.stanza}/${r.database}`;

export function describeWhen(r: WhenResult, live?: string): string {
  const rows = r.tenants.map((t) =>
    'notDeleted' in t
      ? [t.tenantId, 'not deleted', '', '']
      : [t.tenantId, String(t.deletedBy), t.commitTime, t.commitLsn],
  );
  const head = ['tenant', 'deleted by xid', 'committed at', 'commit LSN'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => `  ${cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`.trimEnd();
  const lines = [
    `when ${r.whenId}: ${r.tenantRoot} in stanza ${r.stanza}, database ${r.database}; WAL read from ${r.since.walFrom} (--since ${r.since.target}${r.since.isDefault ? ', the end of the oldest backup' : ''}) to ${r.archive.readTo ?? '?'} (${r.archive.walSegments} segment(s))`,
    line(head),
    ...rows.map(line),
  ];
  const notDeleted = r.tenants.filter((t) => 'notDeleted' in t).length;
  if (notDeleted)
    lines.push(
      `  ${notDeleted} tenant(s) not deleted: their root row is still there at the end of the archive (${r.archive.readTo ?? '?'}), or was removed otherwise than by DELETE (TRUNCATE, a table rewrite)`,
    );
  if (r.first && r.last && r.window)
    lines.push(
      `  first deleting transaction ${r.first.xid}: first record at ${r.first.firstLsn}, committed at ${r.first.commitTime}`,
      `  last deleting transaction ${r.last.xid}: committed at ${r.last.commitLsn}, ${r.last.commitTime}`,
      '',
      `  tenant-restore discover --backup ${backupOf(r)} --from ${r.window.from} --to ${r.window.to}${live ? ` --live ${live}` : ''} --tenant-root ${r.tenantRoot} ...`,
      `  times: the deletions committed from ${r.first.commitTime} to ${r.last.commitTime} (T0 is just before the first one's start, T1 its last commit)`,
    );
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  return lines.join('\n');
}

function archiveRangeText(r: WhenResult): string {
  const a = r.archive;
  return `${a.from ? `from ${a.from.time} (end of backup ${a.from.backup})` : 'nothing'}${a.to ? ` to ${a.to.lastCommit ? `the last archived commit at ${a.to.lastCommit}` : `WAL segment ${a.to.walSegment}`}` : ''}`;
}

export const whenCommand: Command = {
  name: 'when',
  summary: "when were these tenants deleted: the deleting commits' xids, times and LSNs (T0, T1) from the WAL archive",
  usage,
  flags,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, flags, usage);
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'.\n\nusage: ${usage}`);
    const { buildWhenRequest, runWhen } = finding();
    const request = buildWhenRequest(values);
    return connection().withTemporal(async (client) => {
      if (!values.json)
        process.stderr.write(
          `when ${request.input.whenId} started: recovering stanza ${request.input.stanza} at ${request.input.since ? (request.input.since.type === 'time' ? request.input.since.time : request.input.since.lsn) : 'the end of its oldest backup'}, then reading its WAL...\n`,
        );
      const result = await runWhen(client, request, (m) => process.stderr.write(`\n*** WARNING: ${m}\n\n`));
      if (values.json) for (const w of result.warnings) process.stderr.write(`\n*** WARNING: ${w}\n\n`);
      print(!!values.json, result, () => describeWhen(result, values.live));
      if (!result.first) {
        process.stderr.write(
          `tenant-restore when: none of the ${result.tenants.length} tenant(s) was deleted between ${result.since.walFrom} (--since ${result.since.target}) and the end of the archive (${result.archive.readTo ?? '?'}); stanza '${result.stanza}' can recover ${archiveRangeText(result)}. If they were deleted later, archive the WAL (SELECT pg_switch_wal()) and run again; if by TRUNCATE, no DELETE record names them.\n`,
        );
        return exitCodes.partial;
      }
      return exitCodes.ok;
    });
  },
};
