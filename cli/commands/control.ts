/** pause, resume, cancel, approve and concurrency: signals to a running restore. */
import { withTemporal } from '../client/connection';
import { oneRestoreId, parseIntegerFlag, parseTenantList, UsageError } from '../client/input';
import { signalRestore, type RestoreSignal } from '../client/restore';
import { concurrencyRange } from '../../workflows/definitions';
import { exitCodes, parseFlags, print, type Command } from './common';

function signalCommand(name: string, signal: RestoreSignal, summary: string, after: string): Command {
  const usage = `tenant-restore ${name} <restoreId> [--json]\n\n${after}\n\nexit codes: 0 sent | 2 unknown or finished restore | 3 Temporal unreachable`;
  return {
    name,
    summary,
    usage,
    async run(argv) {
      const { values, positionals } = parseFlags(argv, { json: { type: 'boolean' } }, usage);
      const restoreId = oneRestoreId(positionals, usage);
      return withTemporal(async (client) => {
        const sent = await signalRestore(client, restoreId, signal);
        print(!!values.json, sent, () => `${name}: sent to restore ${restoreId}. ${after}`);
        return exitCodes.ok;
      });
    },
  };
}

export const pauseCommand = signalCommand(
  'pause',
  'pause',
  'stop starting tenants; running tenants finish',
  'Running tenants finish; no new tenant starts until resume.',
);
export const resumeCommand = signalCommand(
  'resume',
  'resume',
  'start tenants again after pause',
  'Tenants start again, up to the concurrency.',
);
export const cancelCommand = signalCommand(
  'cancel',
  'cancel',
  'stop the restore: no new tenants, running ones are cancelled, then a report',
  'No new tenant starts; running tenants are cancelled (their transaction rolls back); the report lists them.',
);

const approveUsage = `tenant-restore approve <restoreId> [--tenants 1,2] [--json]

Releases the re-enable actions marked requiresApproval (billing, say): of the listed tenants, or of every tenant of
the restore (also those that have not reached the gate yet) when --tenants is absent.

exit codes: 0 sent | 2 bad input, unknown or finished restore | 3 Temporal unreachable`;

export const approveCommand: Command = {
  name: 'approve',
  summary: 'release the actions held for approval, per tenant (--tenants) or for all',
  usage: approveUsage,
  async run(argv) {
    const { values, positionals } = parseFlags(
      argv,
      { tenants: { type: 'string' }, json: { type: 'boolean' } },
      approveUsage,
    );
    const restoreId = oneRestoreId(positionals, approveUsage);
    const tenantIds = values.tenants !== undefined ? parseTenantList(values.tenants, '--tenants') : undefined;
    return withTemporal(async (client) => {
      const sent = await signalRestore(client, restoreId, 'approve', { tenantIds });
      print(
        !!values.json,
        { ...sent, tenantIds: tenantIds ?? 'all' },
        () =>
          `approve: sent to restore ${restoreId} for ${tenantIds ? `tenants ${tenantIds.join(', ')}` : 'every tenant'}.${sent.note ? ` Note: ${sent.note}.` : ''}`,
      );
      return exitCodes.ok;
    });
  },
};

const concurrencyUsage = `tenant-restore concurrency <restoreId> <N> [--json]

Sets how many restore units (--group-size tenants each) run at once (1..1000), while the restore runs.

exit codes: 0 sent | 2 bad input, unknown or finished restore | 3 Temporal unreachable`;

export const concurrencyCommand: Command = {
  name: 'concurrency',
  summary: 'change how many tenants a running restore restores at once',
  usage: concurrencyUsage,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, { json: { type: 'boolean' } }, concurrencyUsage);
    if (positionals.length !== 2) throw new UsageError(`give a restore id and a number.\n\nusage: ${concurrencyUsage}`);
    const n = parseIntegerFlag('concurrency', positionals[1], concurrencyRange.min, concurrencyRange.max);
    return withTemporal(async (client) => {
      const sent = await signalRestore(client, positionals[0], 'setConcurrency', n);
      print(!!values.json, { ...sent, concurrency: n }, () => `concurrency of restore ${positionals[0]} set to ${n}.`);
      return exitCodes.ok;
    });
  },
};
