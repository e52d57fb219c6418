import { RestoreNotFoundError, UsageError } from '../client/errors';
import { TemporalUnreachableError } from '../../workers/temporal-connection';
import { exitCodes, parseFlags, print, type Command, type Flags } from './common';

// The clients load when the command runs, not with this module: main.ts loads it for `report --help`, which then
// stays clear of the Temporal client, the AWS SDK and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const connection = () => require('../client/connection') as typeof import('../client/connection');
const input = () => require('../client/input') as typeof import('../client/input');
const restore = () => require('../client/restore') as typeof import('../client/restore');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage = `tenant-restore report <restoreId> [--artifacts s3://<bucket>/<prefix>/] [--json]

Prints the report written when the restore ended (Markdown; --json for the full JSON: rows per table, conflicts,
checksums, durations and actions per tenant). Both live in S3 under <artifacts>/<restoreId>/report.{md,json}.
The location comes from the restore's workflow; with --artifacts (the base given to start; or
TENANT_RESTORE_ARTIFACTS) it is read from S3 alone, which works after Temporal's retention has removed the workflow,
or while Temporal is down.

exit codes: 0 every tenant restored | 1 some failed or were cancelled | 2 unknown restore or no report yet | 3 unreachable`;

const flags = { json: { type: 'boolean' }, artifacts: { type: 'string' } } as const satisfies Flags;

export const reportCommand: Command = {
  name: 'report',
  summary: 'print the report of a finished restore (Markdown, or --json)',
  usage,
  flags,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, flags, usage);
    const restoreId = input().oneRestoreId(positionals, usage);
    const { withTemporal } = connection();
    const { artifactsOf, getReport, readReport } = restore();
    const base = values.artifacts ?? process.env.TENANT_RESTORE_ARTIFACTS;
    const fromS3 = () => readReport(artifactsOf(base!, restoreId), restoreId);
    let found: Awaited<ReturnType<typeof readReport>>;
    if (values.artifacts) found = await fromS3();
    else {
      try {
        found = await withTemporal((client) => getReport(client, restoreId));
      } catch (error) {
        // The workflow is gone (retention) or Temporal is down: the report may still be in S3.
        const gone = error instanceof RestoreNotFoundError;
        if (!base || !(gone || error instanceof TemporalUnreachableError)) {
          if (gone)
            throw new UsageError(
              `${error.message} If Temporal's retention removed it, give --artifacts s3://<bucket>/<prefix>/ (the base the restore was started with; by default s3://<backup bucket>/restores/) to read its report from S3.`,
            );
          throw error;
        }
        found = await fromS3();
      }
    }
    const { report, markdown, location } = found;
    print(!!values.json, report, () => `${markdown}\n(${location})`);
    return report.status === 'succeeded' ? exitCodes.ok : exitCodes.partial;
  },
};
