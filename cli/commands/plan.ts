import { readFileSync } from 'node:fs';
import { loadConfig } from '../../activities/config';
import { Pools, hasPassword, passwordRefusal } from '../../activities/db';
import { isRestoreError } from '../../activities/errors';
import { buildPlan, describePlan, fkChecksFromEnv } from '../../activities/plan';
import { exitCodes, parseFlags, print, UsageError, type Command } from './common';

const usage = 'tenant-restore plan --scratch <url|alias> --live <url|alias> --tenant-root <schema.table> [--tenants 1,2 | --tenants-file f] [--config f] [--json]';

/** Tenant ids from a comma list or a file (one per line, or commas; `#` starts a comment). */
export function parseTenantIds(list?: string, file?: string): string[] | undefined {
  if (list && file) throw new UsageError('give --tenants or --tenants-file, not both');
  const text = file ? readFileSync(file, 'utf8').replace(/#.*$/gm, '') : list;
  if (text === undefined) return undefined;
  const ids = text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
  if (!ids.length) throw new UsageError(`no tenant ids in ${file ?? '--tenants'}`);
  return [...new Set(ids)];
}

export const planCommand: Command = {
  name: 'plan',
  summary: 'read both catalogs and print the restore plan: order, ownership paths, cycles, drift, row estimates (writes nothing)',
  usage,
  async run(argv) {
    const { values } = parseFlags(argv, {
      scratch: { type: 'string' },
      live: { type: 'string' },
      'tenant-root': { type: 'string' },
      tenants: { type: 'string' },
      'tenants-file': { type: 'string' },
      config: { type: 'string' },
      json: { type: 'boolean', default: false },
    }, usage);
    if (!values.scratch || !values.live || !values['tenant-root']) throw new UsageError(`--scratch, --live and --tenant-root are required\n\nusage: ${usage}`);
    if (!/^[^.]+\.[^.]+$/.test(values['tenant-root'])) throw new UsageError('--tenant-root must be schema.table, for example public.tenants');
    // Refused like everywhere else: the plan command writes nothing to history, but its reference ends up in shell
    // history, scripts and runbooks that are copied into `start`.
    for (const [flag, ref] of [['scratch', values.scratch], ['live', values.live]] as const) {
      if (hasPassword(ref)) throw new UsageError(passwordRefusal(`--${flag}`, flag));
    }
    const tenantIds = parseTenantIds(values.tenants, values['tenants-file']);
    const pools = new Pools();
    try {
      const config = values.config ? loadConfig(values.config) : undefined;
      let fkChecks;
      try {
        fkChecks = fkChecksFromEnv();
      } catch (error) {
        throw new UsageError((error as Error).message);
      }
      const plan = await buildPlan({ scratch: pools.get(values.scratch, { max: 2 }), live: pools.get(values.live, { max: 2 }), tenantRoot: values['tenant-root'], tenantIds, config, fkChecks });
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
