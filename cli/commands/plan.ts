import { UsageError } from '../client/errors';
import { exitCodes, parseFlags, print, type Command, type Flags } from './common';

// The engine loads when the command runs, not with this module: main.ts loads it for `plan --help`, which then stays
// clear of pg and the AWS SDK.
/* eslint-disable @typescript-eslint/no-require-imports */
const db = () => require('../../activities/db') as typeof import('../../activities/db');
const errors = () => require('../../activities/errors') as typeof import('../../activities/errors');
const planning = () => require('../../activities/plan') as typeof import('../../activities/plan');
const input = () => require('../client/input') as typeof import('../client/input');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage =
  'tenant-restore plan --scratch <url|alias> --live <url|alias> --tenant-root <schema.table> [--tenants 1,2 | --tenants-file f] [--config f] [--json]';

const flags = {
  scratch: { type: 'string' },
  live: { type: 'string' },
  'tenant-root': { type: 'string' },
  tenants: { type: 'string' },
  'tenants-file': { type: 'string', file: true },
  config: { type: 'string', file: true },
  json: { type: 'boolean', default: false },
} as const satisfies Flags;

export const planCommand: Command = {
  name: 'plan',
  summary:
    'read both catalogs and print the restore plan: order, ownership paths, cycles, drift, row estimates (writes nothing)',
  usage,
  flags,
  async run(argv) {
    const { values } = parseFlags(argv, flags, usage);
    if (!values.scratch || !values.live || !values['tenant-root'])
      throw new UsageError(`--scratch, --live and --tenant-root are required\n\nusage: ${usage}`);
    const { checkDatabaseRef, checkTenantRoot, loadConfigFlag, tenantsFromFlags } = input();
    const { Pools } = db();
    const { isRestoreError } = errors();
    const { buildPlan, describePlan, fkChecksFromEnv } = planning();
    const tenantRoot = checkTenantRoot(values['tenant-root']);
    // Checked like start's: the plan command writes nothing to history, but its references and tenant list end up in
    // shell history, scripts and runbooks that are copied into `start`.
    const scratch = checkDatabaseRef('scratch', values.scratch);
    const live = checkDatabaseRef('live', values.live);
    const tenantIds = tenantsFromFlags(values, false);
    const config = values.config ? loadConfigFlag(values.config) : undefined;
    const pools = new Pools();
    try {
      let fkChecks;
      try {
        fkChecks = fkChecksFromEnv();
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      const plan = await buildPlan({
        scratch: pools.get(scratch, { max: 2 }),
        live: pools.get(live, { max: 2 }),
        tenantRoot,
        tenantIds,
        config,
        fkChecks,
      });
      print(values.json, plan, () => describePlan(plan));
      return exitCodes.ok;
    } catch (error) {
      // A named engine error is a problem of input or schema: nothing was written, the message says what to do.
      if (isRestoreError(error)) throw new UsageError(`${error.name}: ${error.message}`);
      throw error;
    } finally {
      await pools.closeAll();
    }
  },
};
