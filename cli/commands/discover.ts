/** `tenant-restore discover`: who was hit, from the backup against live. */
import type { DiscoverSummary } from '../../activities/discover';
import { exitCodes, parseFlags, print, sourceFlags, type Command, type Flags } from './common';
import { UsageError } from '../client/errors';

// The clients load when the command runs: `discover --help` stays clear of the Temporal client, the AWS SDK and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const connection = () => require('../client/connection') as typeof import('../client/connection');
const discovering = () => require('../client/discover') as typeof import('../client/discover');
const starting = () => require('../client/start') as typeof import('../client/start');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage = `tenant-restore discover (--backup s3://<bucket>/<key> | --backup-prefix s3://<bucket>/<prefix>/ [--at <time>]
                          | --backup pgbackrest:<stanza>[/<db>] (--at <time|LSN> | --from <T0> --to <T1>)
                          [--scratch-server <url>] | --scratch <url>)
                        --live <url|alias> --tenant-root <schema.table> [--config <path>] [--id <discoverId>]
                        [--write-list <path>] [--include-partial] [--keep-scratch] [--allow-unverified-backup]
                        [--unsafe-scratch-on-live-server] [--unsafe-scratch-as-live-role] [--unsafe-scratch-as-superuser]
                        [--artifacts s3://<bucket>/<prefix>/] [--task-queue <name>] [--json]

Compares every tenant of the backup with live, table by table (one read of each owned table per side, GROUP BY
tenant), and classifies each: absent (root row gone: purged, or an account closed), partial (root present, rows of
the backup missing: damage, or its users' own deletions; start --allow-partial=<their number>), changed (same keys,
other content: reported, never restored), grown (only new rows: normal), intact, new (in live only). Live is read in a READ ONLY transaction: discover never writes to it.

It runs as the workflow discover/<id> (Web UI), waits for the end, and prints the counts per class, the tables most
affected, and warnings (a live that looks like another database, drift). The result is in S3 under
<artifacts><id>/: discover.json (per tenant: class and rows missing per table), discover.md, restore-list.txt.

  --from, --to      the incident window (with --backup pgbackrest:<stanza>): the database at T0 (just before the
                    incident) is compared with the database at T1 (just after it), not with live, so the classes say
                    exactly what the window did: absent (root deleted in it), partial (rows deleted in it), changed
                    (rows updated in it), grown (rows added in it). Users' own deletions before T0 and after T1 are
                    not in it. restore-list.txt then lists every tenant it touched; revert them with
                    'start --backup pgbackrest:<stanza> --from <T0> --to <T1> --from-discover <id>'
  --backup, --backup-prefix, --at, --scratch-server, --scratch, --live, --tenant-root, --config, --artifacts,
  --allow-unverified-backup, --unsafe-scratch-on-live-server, --unsafe-scratch-as-live-role, --unsafe-scratch-as-superuser,
  --keep-scratch: as for start (scratch is dropped at the end unless --keep-scratch; restore from it with --scratch)
  --write-list      write the tenants to restore (absent; with --include-partial also partial) to <path>, one id per
                    line: the format of 'start --tenants-file'. Or restore them with 'start --from-discover <id>'.
                    A partial tenant may only be one whose users deleted rows since the backup: its rows come back
                    with it. Look at discover.md (missing rows per table) before including partial tenants
  --json            the summary as JSON, with the tenants of each class (absent, partial, changed, grown, new) and
                    their missing, added and changed rows per table (intact tenants are counted only)

exit codes: 0 done (whatever it found) | 2 bad input (a tenant root that is not a table, a backup without it...)
            | 3 a service unreachable`;

const flags = {
  'write-list': { type: 'string', file: true },
  'include-partial': { type: 'boolean' },
  json: { type: 'boolean' },
  ...sourceFlags,
} satisfies Flags;

export function describeDiscovery(s: DiscoverSummary, listPath?: string): string {
  const c = s.counts;
  const lines = [
    ...s.warnings.map((w) => `\n*** WARNING: ${w}\n`),
    `discover ${s.discoverId}: ${s.tenantsInBackup} tenants in the backup, ${s.tenantsInLive} in live, ${s.tables} tables compared`,
    `  absent   ${String(c.absent).padStart(7)}   root row gone: restore`,
    `  partial  ${String(c.partial).padStart(7)}   rows of the backup missing: damage, or its users' own deletions (read them first)`,
    `  changed  ${String(c.changed).padStart(7)}   same keys, other content (reported, never restored)`,
    `  grown    ${String(c.grown).padStart(7)}   only new rows since the backup`,
    `  intact   ${String(c.intact).padStart(7)}`,
    `  new      ${String(c.new).padStart(7)}   in live only, created after the backup`,
  ];
  if (s.mostAffected.length)
    lines.push(
      '  tables most affected (rows missing from live):',
      ...s.mostAffected.slice(0, 5).map((m) => `    ${m.table}: ${m.missingRows} rows of ${m.tenants} tenants`),
    );
  lines.push(`  result:   ${s.artifacts.markdown}`);
  if (s.scratch && !s.scratch.dropped)
    lines.push(`  scratch:  ${s.scratch.ref} (kept: restore from it with --scratch)`);
  if (listPath) lines.push(`  list:     ${listPath}`);
  lines.push(
    `  restore:  tenant-restore start --from-discover ${s.discoverId} ...${c.partial ? '   (partial ones too: read them in discover.md, then --allow-partial=<their number>)' : ''}`,
  );
  return lines.join('\n');
}

export const discoverCommand: Command = {
  name: 'discover',
  summary:
    'who was hit: classify every tenant of the backup against live (absent, partial, changed...), writes nothing',
  usage,
  flags,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, flags, usage);
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'.\n\nusage: ${usage}`);
    if (values['include-partial'] && !values['write-list'])
      throw new UsageError('--include-partial only goes with --write-list <path>.');
    const { buildDiscoverRequest, runDiscover, discoverList, writeList, tenantsByClass } = discovering();
    const { resolveBackupPrefix, pickedBackupLine, withBackupStandIn } = starting();
    buildDiscoverRequest(withBackupStandIn(values));
    const { flags: resolved, picked } = await resolveBackupPrefix(values);
    if (picked) process.stderr.write(`${pickedBackupLine(picked)}\n`);
    const request = buildDiscoverRequest(resolved);
    return connection().withTemporal(async (client) => {
      for (const warning of request.warnings) process.stderr.write(`\n*** WARNING: ${warning}\n\n`);
      if (!values.json)
        process.stderr.write(`discover ${request.input.discoverId} started: comparing the backup with live...\n`);
      const summary = await runDiscover(client, request, (m) => process.stderr.write(`\n*** WARNING: ${m}\n\n`));
      let listPath: string | undefined;
      if (values['write-list']) {
        const { text } = await discoverList(client, summary.discoverId, !!values['include-partial']);
        writeList(values['write-list'], text);
        listPath = values['write-list'];
      }
      // Loud, on stderr, in JSON mode too: a warning inside JSON on stdout would go unread.
      if (values.json) for (const w of summary.warnings) process.stderr.write(`\n*** WARNING: ${w}\n\n`);
      // --json lists the tenants of each class too (from discover.json in S3); the text keeps to counts and tables.
      const output = values.json ? { ...summary, tenants: await tenantsByClass(summary) } : summary;
      print(!!values.json, output, () => describeDiscovery(summary, listPath));
      return exitCodes.ok;
    });
  },
};
