import type { RestoreStatus } from '../client/restore';
import { exitCodes, parseFlags, print, type Command, type Flags } from './common';

// The clients load when the command runs, not with this module: main.ts loads it for `status --help`, which then
// stays clear of the Temporal client, the AWS SDK and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const connection = () => require('../client/connection') as typeof import('../client/connection');
const input = () => require('../client/input') as typeof import('../client/input');
const progress = () => require('../client/progress') as typeof import('../client/progress');
const restore = () => require('../client/restore') as typeof import('../client/restore');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage = `tenant-restore status <restoreId> [--watch] [--json]

  --watch   follow the restore with a live progress bar until it ends (with --json: one JSON line per second)
  --json    the progress (counts by phase, failed tenants with reasons) or the final summary as JSON

exit codes: 0 running or succeeded | 1 ended with failed or cancelled tenants | 2 unknown restore | 3 Temporal unreachable`;

export function describeStatus(s: RestoreStatus): string {
  const { progressLine } = progress();
  const lines = [`restore ${s.restoreId}: ${s.workflowStatus.toLowerCase()}`];
  if (s.progress) {
    const p = s.progress;
    lines.push(`  ${progressLine(p)}`);
    if (p.scratch) lines.push(`  scratch ${p.scratch}, plan ${p.planDigest ?? '(building)'}, run ${p.runs}`);
    for (const f of p.failures.slice(0, 20)) lines.push(`  failed ${f.tenantId}: ${f.reason}`);
    if (p.counts['awaiting-approval'])
      lines.push(
        `  ${p.counts['awaiting-approval']} tenant(s) wait for: tenant-restore approve ${s.restoreId} [--tenants ...]`,
      );
  }
  if (s.searchAttributes) {
    const a = s.searchAttributes;
    lines.push(
      `  phase ${a.phase ?? '?'}: ${a.restored ?? 0}/${a.total ?? '?'} restored, ${a.failed ?? 0} failed (from the search attributes)`,
    );
  }
  if (s.noWorker) lines.push(`  ${s.noWorker}`);
  if (s.result) {
    const r = s.result;
    lines.push(
      `  ${r.status}: ${r.restored}/${r.total} restored, ${r.failed} failed, ${r.cancelled} cancelled, ${(r.durationMs / 1000).toFixed(1)} s`,
    );
    for (const f of r.failures.slice(0, 20)) lines.push(`  failed ${f.tenantId}: ${f.reason}`);
    if (r.report) lines.push(`  report: ${r.report.markdown}  (tenant-restore report ${s.restoreId})`);
  }
  if (s.error) lines.push(`  error: ${s.error}`);
  lines.push(`  web UI: ${s.webUi}`);
  return lines.join('\n');
}

const exitFor = (s: RestoreStatus) =>
  s.workflowStatus === 'RUNNING' || s.result?.status === 'succeeded' ? exitCodes.ok : exitCodes.partial;

const flags = { watch: { type: 'boolean' }, json: { type: 'boolean' } } as const satisfies Flags;

export const statusCommand: Command = {
  name: 'status',
  summary: "show a restore's progress: counts by phase, failed tenants; --watch for a live progress bar",
  usage,
  flags,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, flags, usage);
    const restoreId = input().oneRestoreId(positionals, usage);
    const { withTemporal } = connection();
    const { progressPrinter } = progress();
    const { getRestoreStatus } = restore();
    return withTemporal(async (client) => {
      let status = await getRestoreStatus(client, restoreId);
      if (!values.watch) {
        print(!!values.json, status, () => describeStatus(status));
        return exitFor(status);
      }
      const printer = progressPrinter(process.stdout);
      let warnedAt = 0;
      while (status.workflowStatus === 'RUNNING') {
        if (values.json) process.stdout.write(`${JSON.stringify(status)}\n`);
        else if (status.progress) printer.update(status.progress);
        if (status.noWorker && Date.now() - warnedAt > 60_000) {
          warnedAt = Date.now();
          process.stderr.write(`\n*** WARNING: ${status.noWorker}\n`);
        }
        await new Promise((r) => setTimeout(r, 1000));
        status = await getRestoreStatus(client, restoreId);
      }
      printer.end();
      print(!!values.json, status, () => describeStatus(status));
      return exitFor(status);
    });
  },
};
