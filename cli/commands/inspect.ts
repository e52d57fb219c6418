/** `list` and `describe`: restores and drills from the visibility store, and one restore whole. */
import { withTemporal } from '../client/connection';
import { describeRestore, formatListed, listRestores, listStatuses } from '../client/inspect';
import { oneRestoreId, parseIntegerFlag, UsageError } from '../client/input';
import { exitCodes, parseFlags, print, type Command } from './common';
import { describeStatus } from './status';

const listUsage = `tenant-restore list [--status ${Object.keys(listStatuses).join('|')}] [--kind restore|drill] [--limit N] [--json]

Restores and drills, newest first, from Temporal's visibility store: id, status, tenants restored and failed (as the
workflow last recorded them), phase. Works without a worker.

exit codes: 0 listed | 2 bad flags | 3 Temporal unreachable`;

export const listCommand: Command = {
  name: 'list',
  summary: 'restores and drills, newest first, filterable by status and kind',
  usage: listUsage,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      { status: { type: 'string' }, kind: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' } },
      listUsage,
    );
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'.\n\nusage: ${listUsage}`);
    if (values.kind !== undefined && values.kind !== 'restore' && values.kind !== 'drill')
      throw new UsageError(`--kind '${values.kind}': restore or drill.`);
    const limit = values.limit === undefined ? 20 : parseIntegerFlag('--limit', values.limit, 1, 1000);
    return withTemporal(async (client) => {
      const listed = await listRestores(client, { status: values.status, kind: values.kind as 'restore', limit });
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

export const describeCommand: Command = {
  name: 'describe',
  summary: 'one restore whole: its input, phase counts, failures, report location and Web UI link',
  usage: describeUsage,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, { json: { type: 'boolean' } }, describeUsage);
    const restoreId = oneRestoreId(positionals, describeUsage);
    return withTemporal(async (client) => {
      const d = await describeRestore(client, restoreId);
      print(!!values.json, d, () => {
        const i = d.input;
        const source =
          i?.source.kind === 'backup' ? `backup ${i.source.backup}` : i ? `scratch ${i.source.scratch}` : '';
        return [
          describeStatus(d),
          ...(i
            ? [
                `  source: ${source}`,
                `  live: ${i.live}, tenant root ${i.tenantRoot}, ${i.tenants} tenants, conflict ${i.conflict}`,
                `  concurrency ${i.concurrency}, units of ${i.groupSize ?? 1}${i.allowPartial ? ', partial tenants allowed' : ''}${i.keepScratch ? ', scratch kept' : ''}`,
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
