import { UsageError } from '../client/errors';
import type { StartFlags } from '../client/start';
import { conflictPolicies } from '../../activities/restore-types';
import { exitCodes, parseFlags, print, sourceFlags, type Command, type Flags } from './common';

// The clients load when the command runs, not with this module: main.ts loads it for `start --help`, which then stays
// clear of the Temporal client, the AWS SDK and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const connection = () => require('../client/connection') as typeof import('../client/connection');
const progress = () => require('../client/progress') as typeof import('../client/progress');
const starting = () => require('../client/start') as typeof import('../client/start');
const sources = () => require('../client/source') as typeof import('../client/source');
const backupPrefix = () => require('../client/backup-prefix') as typeof import('../client/backup-prefix');
const startWorkflow = () => require('../client/start-workflow') as typeof import('../client/start-workflow');
const discovering = () => require('../client/discover') as typeof import('../client/discover');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage = `tenant-restore start (--backup s3://<bucket>/<key> | --backup-prefix s3://<bucket>/<prefix>/ [--at <time>]
                       [--scratch-server <url>] | --backup pgbackrest:<stanza>[/<db>] (--at <time|LSN>
                       | --from <T0> --to <T1> [--conflicts refuse|report]) | --scratch <url>)
                     --live <url|alias> --tenant-root <schema.table>
                     (--tenants 1,2,3 | --tenants-file <path> | --from-discover <discoverId>) [--conflict skip|overwrite|fail]
                     [--concurrency N] [--group-size N | --unit-rows N] [--config <path>] [--id <restoreId>] [--keep-scratch]
                     [--allow-partial[=<n>]] [--allow-unverified-backup] [--wait] [--json]
                     [--unsafe-scratch-on-live-server] [--unsafe-scratch-as-live-role] [--unsafe-scratch-as-superuser]
                     [--artifacts s3://<bucket>/<prefix>/] [--task-queue <name>] [--children-per-run N]

  --backup          pg_dump custom-format archive (pg_dump -Fc) in S3; checked against <key>.manifest.json
                    ({ sha256, size, signature }: signed by the backup job's Ed25519 key, checked with the workers'
                    TENANT_RESTORE_BACKUP_PUBLIC_KEY), then loaded with pg_restore (never psql: a plain
                    SQL file, tar, gzip... is refused, UnsupportedBackupFormat) into this restore's own scratch,
                    scratch_<restoreId>_<hash of the id>, on --scratch-server
  --backup-prefix   the newest pg_dump archive under this prefix (manifests are not archives); with --at <time>
                    (RFC 3339 with its zone: 2026-12-02T07:03:00Z), the newest taken before that moment, by its
                    manifest's createdAt (else its upload time). start says which it picked and how old it is
  --backup pgbackrest:<stanza>[/<database>] --at <time|LSN>
                    point in time: scratch recovered from the stanza's WAL archive to that moment (RFC 3339 with its
                    zone, or an LSN such as 0/3A000060) by 'pgbackrest restore --type=time|lsn' on a worker's host, in a
                    private PostgreSQL there (unix socket only); the restore's reads of it run on that host's task
                    queue. Refused with the range there is when the moment is before the oldest backup or after the
                    archive's last commit. The database defaults to live's. Needs --artifacts (or
                    TENANT_RESTORE_ARTIFACTS). The server is stopped and removed at the end unless --keep-scratch
  --from, --to      the incident window, with --backup pgbackrest:<stanza>[/<db>]: T0 just before the incident, T1 just
                    after it (times with their zone, or LSNs; 'tenant-restore when' finds them). Two scratches are
                    recovered (T0, T1) on one worker's host, and exactly what changed between them is reverted in
                    live now, three ways: a row the window deleted comes back (unless live holds another row with its
                    key), a row it changed goes back to T0 where live still holds its T1 version, a row it added is
                    reported and left. Rows users deleted or changed before T0 or after T1 stay as they are. Tenants
                    whose root stayed in live are not re-enabled (no action runs for them). The report lists each
                    tenant's deleted, changed, reverted and added rows; window.json the conflicts, by key
  --conflicts       with --from/--to: refuse (default) stops a tenant with any conflict (a row changed or deleted again
                    since T1, a key live holds with other content) before anything of it is written, exit 1; report
                    restores everything else of it and lists its conflicts, left as they are
  --scratch-server  where scratch is created (postgres://<role with CREATEDB>@<host>/postgres, or an alias). Default:
                    TENANT_RESTORE_SCRATCH_SERVER. A backup is code for the role that loads it (a CHECK constraint of
                    the archive runs its functions during pg_restore), so it must be a server of its own with an
                    unprivileged role: live's server (or none given), live's role, or a role that reaches the host
                    (superuser, CREATEROLE, pg_*_server_*) is refused, exit 2 (the worker refuses it too, not retried)
  --unsafe-scratch-on-live-server, --unsafe-scratch-as-live-role, --unsafe-scratch-as-superuser
                    accept that risk: load the backup on live's server / as live's role / as a role that reaches the
                    scratch host's files and programs (each says loudly what it allows; start warns)
  --allow-unverified-backup  load a backup whose manifest is missing, unsigned, or whose signature does not verify;
                    refused otherwise (BackupUnverified, BackupSignatureInvalid). The report records how the backup was
                    verified (verifiedBy: signature, or manifest/metadata/size-only when unverified)
  --scratch         a database already restored from the backup (RDS point-in-time restore, pgBackRest...); never dropped
  --live            the production database: postgres://user@host:port/db WITHOUT password, or an alias. Workers find
                    the password in PGPASSFILE / PGPASSWORD, or resolve TENANT_RESTORE_DB_<ALIAS> from their environment
  --tenant-root     the table whose primary key is the tenant id, e.g. app.tenants
  --tenants         comma-separated ids; --tenants-file: one id per line (blank lines and # comments allowed)
  --from-discover   the tenants a finished 'tenant-restore discover' found: the absent ones, and with --allow-partial=<n>
                    the partial ones too (read from its restore-list.txt / restore-list-partial.txt in S3)
  --conflict        a key already in live for the same tenant: skip (live wins, default), overwrite (backup wins), fail
  --concurrency     child workflows (groups of tenants, or tenants with --group-size 1) restored at once (default 2:
                    bound it by live's CPU, not by Temporal); change it later with no restart: see 'concurrency'
  --unit-rows       rows per child workflow (default 200000): the first children take 20 tenants, each later one as many
                    tenants as that many rows hold at the rows per tenant restored so far (at most 500). A unit's steps
                    are set-based over its tenants and its copy is one transaction (chunked above chunkRows); if a step
                    fails, the unit is halved until the bad tenant fails alone
  --group-size      a fixed number of tenants per child workflow instead of --unit-rows. 1: one child per tenant,
                    restore/<id>/tenant/<t> (per-tenant evidence, per-tenant Web UI rows)
  --config          JSON: logicalForeignKeys, excludeTables, chunkRows, actions (re-enable SQL/webhooks, requiresApproval)
  --id              restore id (default r-<time>-<random>), used once: an id that already ran is refused (exit 2) with
                    the command to see its report; the workflow is restore/<id>, its children
                    restore/<id>/group/<index of the group's first tenant> (or restore/<id>/tenant/<t> with --group-size 1)
  --allow-partial[=<n>]  also restore 'partial' tenants (root row still in live, some rows of the backup missing) by
                    inserting only their missing rows, never updating a row, whatever --conflict says. Risk: rows their
                    users deleted on purpose since the backup come back too. With --from-discover, n (also
                    '--allow-partial <n>') must be the number of partial tenants in its list: the bare flag or another
                    number is refused (exit 2) with that number and the 10 tenants with the most rows that would come
                    back. With --tenants / --tenants-file, the bare flag (a count is refused: which tenants are partial
                    is known only at their preflight). Without it, a tenant still in live ('present', or 'partial') is
                    refused with nothing of it written, and the others go on. With a WAL archive, prefer the incident
                    window (--from/--to): it brings back only what the incident deleted, none of the users' own deletions
  --keep-scratch    keep this restore's scratch after it ends (default: dropped when the restore ends, kept when it
                    fails); only this restore ever drops it. A new restore can use it with --scratch <url>
  --artifacts       where plan.json, tenants.json and report.{json,md} go (default: s3://<backup bucket>/restores/,
                    or TENANT_RESTORE_ARTIFACTS); each restore writes under <prefix><restoreId>/
  --wait            wait for the end with a progress line on stderr; exit 0 only when every tenant is restored
  --json            one JSON object on stdout: { restoreId, status, tenants: [{ tenantId, status, rows, error? }] }
  --children-per-run  child workflows one run of restore/<id> starts before it continues as new (default 500), which
                    bounds its history; tests set it low to exercise continue-as-new

Input is checked before anything starts: exit 2 and nothing written when it is wrong.
exit codes: 0 restored and validated (or started, without --wait) | 1 some tenants failed | 2 bad input (with --wait: also
            a restore that failed before any tenant started, e.g. a corrupt backup or a schema it cannot restore) | 3 service unreachable`;

const flags = {
  tenants: { type: 'string' },
  'tenants-file': { type: 'string', file: true },
  'from-discover': { type: 'string' },
  conflict: { type: 'string', choices: conflictPolicies },
  conflicts: { type: 'string', choices: ['refuse', 'report'] },
  concurrency: { type: 'string' },
  'group-size': { type: 'string' },
  'unit-rows': { type: 'string' },
  // A string, so that --allow-partial=<n> parses; the bare flag is turned into '' first (bareAllowPartial).
  'allow-partial': { type: 'string' },
  wait: { type: 'boolean' },
  json: { type: 'boolean' },
  'children-per-run': { type: 'string' },
  ...sourceFlags,
} as const satisfies Flags;

/**
 * `--allow-partial` with no value (last, or followed by another flag) becomes `--allow-partial=`: parseArgs would
 * otherwise refuse a string flag without its value, or take the next flag as it. `--allow-partial 16` and
 * `--allow-partial=16` are left as they are.
 */
export function bareAllowPartial(argv: string[]): string[] {
  const end = argv.indexOf('--');
  return argv.map((arg, i) =>
    arg === '--allow-partial' && (end === -1 || i < end) && (i + 1 === argv.length || argv[i + 1]!.startsWith('-'))
      ? '--allow-partial='
      : arg,
  );
}

export const startCommand: Command = {
  name: 'start',
  summary: 'start a restore of some tenants from a backup (--wait to follow it to the end)',
  usage,
  flags,
  async run(argv) {
    const { values, positionals } = parseFlags(bareAllowPartial(argv), flags, usage);
    if (positionals.length) {
      throw new UsageError(`unexpected argument '${positionals[0]}'.\n\nusage: ${usage}`);
    }
    const { noWorkerWarning, withTemporal, workflowPollers } = connection();
    const { progressPrinter, waitForRestore } = progress();
    const { buildStartRequest, newRestoreId, parseAllowPartial } = starting();
    const { sourceFromFlags } = sources();
    const { resolveBackupPrefix, pickedBackupLine, withBackupStandIn } = backupPrefix();
    const { startRestore } = startWorkflow();
    const fromDiscover = values['from-discover'];
    const allowPartial = parseAllowPartial(values['allow-partial']);
    // The flags are checked before anything is read (exit 2): then the archive --backup-prefix names is picked in S3,
    // the tenant list of a discover is read, and the whole request is built.
    const restoreId = values.id ?? newRestoreId();
    if (fromDiscover) sourceFromFlags(withBackupStandIn({ ...values, id: restoreId }));
    else buildStartRequest(withBackupStandIn({ ...values, id: restoreId }) as StartFlags);
    const { flags: resolved, picked } = await resolveBackupPrefix({ ...values, id: restoreId });
    if (picked) process.stderr.write(`${pickedBackupLine(picked)}\n`);
    return withTemporal(async (client) => {
      let discovered: { discoverId: string; text: string } | undefined;
      if (fromDiscover) {
        const { discoverList, checkPartialCount } = discovering();
        const { text, location, markdown, partial, absent } = await discoverList(client, fromDiscover, !!allowPartial);
        if (!text.split('\n').some((l) => l.trim() && !l.startsWith('#')))
          throw new UsageError(
            `discover ${fromDiscover} found no tenant to restore (${location} lists none${allowPartial ? '' : '; partial tenants go in only with --allow-partial=<their number>'}). Nothing was started.`,
          );
        // Partial tenants never come from a flag alone: their number, said back.
        if (allowPartial)
          checkPartialCount(fromDiscover, allowPartial, { partial: partial!, absent: absent!, markdown });
        discovered = { discoverId: fromDiscover, text };
      }
      const request = buildStartRequest(resolved as StartFlags, process.env, discovered);
      const started = await startRestore(client, request);
      // Loud, on stderr, whatever the output mode: a warning in the middle of JSON on stdout would go unread.
      for (const warning of started.warnings) process.stderr.write(`\n*** WARNING: ${warning}\n\n`);
      const noWorker = (message: string) => process.stderr.write(`\n*** WARNING: ${message}\n\n`);
      if (!values.wait) {
        // Started, and nothing will run it: say so (the exit code stays 0: the restore exists and will run).
        if ((await workflowPollers(client, started.taskQueue).catch(() => 1)) === 0)
          noWorker(noWorkerWarning(started.taskQueue));
        print(!!values.json, started, () =>
          [
            `started restore ${started.restoreId}: ${started.tenants} tenants, concurrency ${request.input.concurrency}, task queue ${started.taskQueue}`,
            `  watch:    tenant-restore status ${started.restoreId} --watch`,
            `  web UI:   ${started.webUi}`,
            `  control:  tenant-restore pause|resume|cancel ${started.restoreId}`,
            `  report:   tenant-restore report ${started.restoreId}   (${started.artifacts}report.md)`,
          ].join('\n'),
        );
        return exitCodes.ok;
      }
      if (!values.json) process.stderr.write(`restore ${started.restoreId} started (${started.webUi})\n`);
      const printer = progressPrinter();
      const output = await waitForRestore(client, started.restoreId, printer.update, {
        taskQueue: started.taskQueue,
        onNoWorker: noWorker,
      });
      printer.end();
      print(!!values.json, started.warnings.length ? { ...output, warnings: started.warnings } : output, () =>
        [
          `restore ${output.restoreId}: ${output.status}: ${output.restored}/${output.total} restored, ${output.failed} failed, ${output.cancelled} cancelled`,
          output.refused
            ? `  refused ${output.refused} of ${output.total}: still in live (present, or partial without --allow-partial); nothing of them was written`
            : '',
          ...output.tenants
            .filter((t) => t.status !== 'restored')
            .slice(0, 50)
            .map((t) => `  tenant ${t.tenantId}: ${t.status}${t.error ? `: ${t.error}` : ''}`),
          output.error ? `  error: ${output.error}` : '',
          output.report ? `  report: ${output.report.markdown}` : '',
        ]
          .filter(Boolean)
          .join('\n'),
      );
      if (output.status === 'succeeded') return exitCodes.ok;
      // Failed before any tenant started (the backup is corrupt, the schema cannot be restored...): nothing was
      // written to live, so this is bad input, exit 2; the error says what to fix.
      if (output.status === 'failed' && output.tenants.every((t) => t.status === 'not-started')) return exitCodes.usage;
      return exitCodes.partial;
    });
  },
};
