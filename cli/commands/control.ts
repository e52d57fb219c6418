/**
 * pause, resume, approve and concurrency: Workflow Updates that the restore checks and answers with what it accepted;
 * cancel: a signal. See controlRestore in cli/client/control.ts.
 */
import { UsageError } from '../client/errors';
import type { ControlResult, RestoreControl } from '../client/restore';
import type { ApproveAck, ControlAck } from '../../workflows/definitions';
import { exitCodes, parseFlags, print, type Command, type Flags } from './common';

// The clients load when the command runs, not with this module: `pause --help` stays clear of the Temporal client,
// the workflow definitions and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const connection = () => require('../client/connection') as typeof import('../client/connection');
const input = () => require('../client/input') as typeof import('../client/input');
const restore = () => require('../client/restore') as typeof import('../client/restore');
const definitions = () => require('../../workflows/definitions') as typeof import('../../workflows/definitions');
/* eslint-enable @typescript-eslint/no-require-imports */

const controlExitCodes =
  'exit codes: 0 accepted (or sent, where the restore cannot answer: the output says so) | 2 bad input, unknown or finished restore, or refused by the restore (nothing changed) | 3 Temporal unreachable, or no answer in 15 s';

/** The state a restore answered with, in one line. */
function describeState(ack: ControlAck): string {
  const flow = ack.cancelRequested ? 'cancelling' : ack.paused ? 'paused' : 'running';
  return `${flow}, concurrency ${ack.concurrency}, ${ack.started} tenants started, ${ack.running} running`;
}

/**
 * What the operator reads: what the restore accepted, or that it was only sent and why. `accepted` is absent for
 * cancel, which is always a signal.
 */
function outcomeLine(
  result: ControlResult,
  accepted: ((ack: ControlAck & ApproveAck) => string) | undefined,
  sent: string,
): string {
  const line = !accepted
    ? sent
    : result.delivery === 'update' && result.accepted
      ? accepted(result.accepted as ControlAck & ApproveAck)
      : `${sent} (sent as a signal: the restore does not acknowledge it)`;
  return result.note ? `${line}\nNote: ${result.note}.` : line;
}

function simpleControl(
  name: 'pause' | 'resume' | 'cancel',
  summary: string,
  after: string,
  accepted?: (ack: ControlAck, restoreId: string) => string,
): Command {
  const usage = `tenant-restore ${name} <restoreId> [--json]\n\n${after}\n\n${controlExitCodes}`;
  const flags = { json: { type: 'boolean' } } satisfies Flags;
  return {
    name,
    summary,
    usage,
    flags,
    async run(argv) {
      const { values, positionals } = parseFlags(argv, flags, usage);
      const restoreId = input().oneRestoreId(positionals, usage);
      return connection().withTemporal(async (client) => {
        const result = await restore().controlRestore(client, restoreId, name satisfies RestoreControl);
        print(!!values.json, result, () =>
          outcomeLine(
            result,
            accepted && ((ack) => accepted(ack, restoreId)),
            `${name}: sent to restore ${restoreId}. ${after}`,
          ),
        );
        return exitCodes.ok;
      });
    },
  };
}

export const pauseCommand = simpleControl(
  'pause',
  'stop starting tenants; running tenants finish',
  'Running tenants finish; no new tenant starts until resume. The restore answers with its state.',
  (ack, id) =>
    `restore ${id} ${ack.changed ? 'paused' : 'was already paused'}: ${describeState(ack)}. Running tenants finish; resume with: tenant-restore resume ${id}`,
);
export const resumeCommand = simpleControl(
  'resume',
  'start tenants again after pause',
  'Tenants start again, up to the concurrency. The restore answers with its state.',
  (ack, id) => `restore ${id} ${ack.changed ? 'resumed' : 'was not paused'}: ${describeState(ack)}.`,
);
export const cancelCommand = simpleControl(
  'cancel',
  'stop the restore: no new tenants, running ones are cancelled, then a report',
  'No new tenant starts; running tenants are cancelled (their transaction rolls back); the report lists them.',
);

const approveUsage = `tenant-restore approve <restoreId> [--tenants 1,2] [--json]

Releases the re-enable actions marked requiresApproval (billing, say): of the listed tenants, or of every tenant of
the restore (also those that have not reached the gate yet) when --tenants is absent. The restore refuses (exit 2,
nothing approved) tenants that are not in it, a restore whose actions hold nothing for approval, and a restore being
cancelled; it answers with how many tenants it released at once.

${controlExitCodes}`;

const approveFlags = { tenants: { type: 'string' }, json: { type: 'boolean' } } satisfies Flags;

export const approveCommand: Command = {
  name: 'approve',
  summary: 'release the actions held for approval, per tenant (--tenants) or for all',
  usage: approveUsage,
  flags: approveFlags,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, approveFlags, approveUsage);
    const restoreId = input().oneRestoreId(positionals, approveUsage);
    const tenantIds = values.tenants !== undefined ? input().parseTenantList(values.tenants, '--tenants') : undefined;
    const who = tenantIds ? `tenants ${tenantIds.join(', ')}` : 'every tenant';
    return connection().withTemporal(async (client) => {
      const result = await restore().controlRestore(client, restoreId, 'approve', { tenantIds });
      print(!!values.json, { ...result, tenantIds: tenantIds ?? 'all' }, () =>
        outcomeLine(
          result,
          (ack) =>
            `approve: restore ${restoreId} approved ${who}: ${ack.releasedNow} released now (were waiting at the gate), ` +
            `${ack.runningBeforeGate} running will pass the gate without waiting; tenants not started yet pass it when they get there.`,
          `approve: sent to restore ${restoreId} for ${who}.`,
        ),
      );
      return exitCodes.ok;
    });
  },
};

const concurrencyUsage = `tenant-restore concurrency <restoreId> <N> [--json]

Sets how many restore units (child workflows: --unit-rows rows or --group-size tenants each) run at once (1..1000), while the restore runs. The
restore answers with its state; running units above a lower limit finish, and no new one starts until under it.

${controlExitCodes}`;

const concurrencyFlags = { json: { type: 'boolean' } } satisfies Flags;

export const concurrencyCommand: Command = {
  name: 'concurrency',
  summary: 'change how many tenants a running restore restores at once',
  usage: concurrencyUsage,
  flags: concurrencyFlags,
  async run(argv) {
    const { values, positionals } = parseFlags(argv, concurrencyFlags, concurrencyUsage);
    if (positionals.length !== 2) throw new UsageError(`give a restore id and a number.\n\nusage: ${concurrencyUsage}`);
    const [restoreId, text] = positionals as [string, string];
    const { min, max } = definitions().concurrencyRange;
    const n = input().parseIntegerFlag('concurrency', text, min, max);
    return connection().withTemporal(async (client) => {
      const result = await restore().controlRestore(client, restoreId, 'setConcurrency', n);
      print(!!values.json, { ...result, concurrency: n }, () =>
        outcomeLine(
          result,
          (ack) =>
            `concurrency of restore ${restoreId} ${ack.changed ? `set to ${ack.concurrency}` : `was already ${ack.concurrency}`}: ${describeState(ack)}.`,
          `concurrency of restore ${restoreId}: ${n}`,
        ),
      );
      return exitCodes.ok;
    });
  },
};
