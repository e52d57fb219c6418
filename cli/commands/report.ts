import { withTemporal } from '../client/connection';
import { oneRestoreId } from '../client/input';
import { getReport } from '../client/restore';
import { exitCodes, parseFlags, print, type Command } from './common';

const usage = `tenant-restore report <restoreId> [--json]

Prints the report written when the restore ended (Markdown; --json for the full JSON: rows per table, conflicts,
checksums, durations and actions per tenant). Both live in S3 under <artifacts>/<restoreId>/report.{md,json}.

exit codes: 0 every tenant restored | 1 some failed or were cancelled | 2 unknown restore or no report yet | 3 unreachable`;

export const reportCommand: Command = {
  name: 'report',
  summary: 'print the report of a finished restore (Markdown, or --json)',
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, { json: { type: 'boolean' } }, usage);
    const restoreId = oneRestoreId(positionals, usage);
    return withTemporal(async (client) => {
      const { report, markdown, location } = await getReport(client, restoreId);
      print(!!values.json, report, () => `${markdown}\n(${location})`);
      return report.status === 'succeeded' ? exitCodes.ok : exitCodes.partial;
    });
  },
};
