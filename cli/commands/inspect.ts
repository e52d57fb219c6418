/** `list` and `describe`: restores and drills from the visibility store, and one restore whole. */
import { UsageError } from '../client/errors';
import { exitCodes, parseFlags, print, type Command, type Flags } from './common';
import { describeStatus } from './status';

// The clients load when the command runs, not with this module: main.ts loads it for `list --help` and
// `describe --help`, which then stay clear of the Temporal client, the AWS SDK and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const connection = () => require('../client/connection') as typeof import('../client/connection');
const inspect = () => require('../client/inspect') as typeof import('../client/inspect');
const input = () => require('../client/input') as typeof import('../client/input');
/* eslint-enable @typescript-eslint/no-require-imports */

// The statuses of cli/client/inspect.ts's listStatuses, written out so that the usage loads no client
// (test/unit/cli-help.test.ts keeps the two equal).
const listUsage = `tenant-restore list [--status running|completed|failed|cancelled|terminated|timed-out] [--kind restore|drill|discover] [--limit N] [--json]

Restores and drills, newest first, from Temporal's visibility store: id, status, tenants restored and failed (as the
workflow last recorded them), phase. Works without a worker.

exit codes: 0 listed | 2 bad flags | 3 Temporal unreachable`;

const listFlags = {
  // listStatuses' keys, written out like the usage's (test/unit/cli-completion.test.ts keeps the three equal).
  status: { type: 'string', choices: ['running', 'completed', 'failed', 'cancelled', 'terminated', 'timed-out'] },
  kind: { type: 'string', choices: ['restore', 'drill', 'discover'] },
  limit: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies Flags;

export const listCommand: Command = {
  name: 'list',
  summary: 'restores, drills and discovers, newest first, filterable by status and kind',
  usage: listUsage,
  flags: listFlags,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, listFlags, listUsage);
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'.\n\nusage: ${listUsage}`);
    if (values.kind !== undefined && !['restore', 'drill', 'discover'].includes(values.kind))
      throw new UsageError(`--kind '${values.kind}': restore, drill or discover.`);
    const limit = values.limit === undefined ? 20 : input().parseIntegerFlag('--limit', values.limit, 1, 1000);
    const { withTemporal } = connection();
    const { formatListed, listRestores } = inspect();
    return withTemporal(async (client) => {
      const listed = await listRestores(client, {
        status: values.status,
        kind: values.kind as 'restore' | 'drill' | 'discover',
        limit,
      });
      print(!!values.json, listed, () =>
        listed.length ? listed.map(formatListed).join('\n') : 'no restores or drills match.',
      );
      return exitCodes.ok;
    });
  },
};

const describeUsage = `tenant-restore describe <restoreId> [--json]

One restore whole: what it was started with (source, live, tenant root, policy, concurrency, unit size), its status
and phase counts, its failed tenants with their reasons, where its report is, and its Web UI link. Works without a
worker (the counts then come from the search attributes).

exit codes: 0 running or succeeded | 1 ended with failed or cancelled tenants | 2 unknown restore | 3 Temporal unreachable`;

const describeFlags = { json: { type: 'boolean' } } as const satisfies Flags;

export const describeCommand: Command = {
  name: 'describe',
  summary: 'one restore whole: its input, phase counts, failures, report location and Web UI link',
  usage: describeUsage,
  flags: describeFlags,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, describeFlags, describeUsage);
    const restoreId = input().oneRestoreId(positionals, describeUsage);
    const { withTemporal } = connection();
    const { describeRestore } = inspect();
    return withTemporal(async (client) => {
      const d = await describeRestore(client, restoreId);
      print(!!values.json, d, () => {
        const i = d.input;
        const source = !i
          ? ''
          : i.source.kind === 'backup'
            ? `backup ${i.source.backup}`
            : i.source.kind === 'point-in-time'
              ? `pgbackrest:${i.source.stanza} at ${i.source.target.type === 'time' ? i.source.target.time : `LSN ${i.source.target.lsn}`}`
              : `scratch ${i.source.scratch}`;
        return [
          describeStatus(d),
          ...(i
            ? [
                `  source: ${source}`,
                `  live: ${i.live}, tenant root ${i.tenantRoot}, ${i.tenants} tenants, conflict ${i.conflict}`,
                `  concurrency ${i.concurrency}, units of ${i.unitRows ? `about ${i.unitRows} rows (the first of ${i.groupSize ?? 1} tenants)` : (i.groupSize ?? 1)}${i.allowPartial ? ', partial tenants allowed' : ''}${i.keepScratch ? ', scratch kept' : ''}`,
              ]
            : []),
          d.report ? `  report: ${d.report}` : '',
        ]
          .filter(Boolean)
          .join('\n');
      });
      return d.workflowStatus === 'RUNNING' || d.result?.status === 'succeeded' ? exitCodes.ok : exitCodes.partial;
    });
  },
};
