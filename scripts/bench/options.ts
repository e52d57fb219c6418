import { parseArgs } from 'node:util';

export const usage = `npm run bench -- [--quick] [--tenants N] [--rows N] [--victims N] [--empty N] [--scale N]
                    [--big-rows 1000000,5000000] [--concurrency N] [--group-size N] [--scale-concurrency N] [--children-per-run N]
                    [--baseline-seconds S] [--writer-connections N] [--timeout-minutes M] [--overhead-timeout-minutes M]
                    [--scale-timeout-minutes M] [--memory-timeout-minutes M] [--seed N]
                    [--wide-tables N] [--wide-tenants N] [--wide-victims N] [--wide-rows N] [--wide-timeout-minutes M]
                    [--skip-ideal] [--skip-product] [--skip-overhead] [--skip-scale] [--skip-memory] [--skip-live]
                    [--skip-wide] [--skip-units] [--skip-discover] [--discover-timeout-minutes M]
                    [--skip-pitr] [--pitr-timeout-minutes M] [--skip-window] [--window-reps N]
                    [--discover-datasets main,wide,scale]
                    [--fresh-data] [--keep] [--json] [--out <file>]`;

export interface Options {
  quick: boolean;
  tenants: number;
  rows: number;
  victims: number;
  empty: number;
  scale: number;
  bigRows: number[];
  concurrency?: number;
  groupSize?: number;
  scaleConcurrency?: number;
  childrenPerRun?: number;
  baselineSeconds: number;
  writerConnections: number;
  timeoutMinutes: number;
  scaleTimeoutMinutes: number;
  overheadTimeoutMinutes: number;
  memoryTimeoutMinutes: number;
  discoverTimeoutMinutes: number;
  pitrTimeoutMinutes: number;
  /** Repetitions of the window section (a fresh copy of T0 each). */
  windowReps: number;
  /** Datasets discover runs on; default main, plus wide and scale unless their sections are skipped. */
  discoverDatasets: string[];
  wide: { tables: number; tenants: number; victims: number; rowsPerTable: number; timeoutMinutes: number };
  seed: number;
  skip: Record<
    'ideal' | 'product' | 'overhead' | 'scale' | 'memory' | 'live' | 'wide' | 'units' | 'discover' | 'pitr' | 'window',
    boolean
  >;
  freshData: boolean;
  keep: boolean;
  json: boolean;
  out?: string;
}

export function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      quick: { type: 'boolean' },
      tenants: { type: 'string' },
      rows: { type: 'string' },
      victims: { type: 'string' },
      empty: { type: 'string' },
      scale: { type: 'string' },
      'big-rows': { type: 'string' },
      concurrency: { type: 'string' },
      'group-size': { type: 'string' },
      'scale-concurrency': { type: 'string' },
      'children-per-run': { type: 'string' },
      'baseline-seconds': { type: 'string' },
      'writer-connections': { type: 'string' },
      'timeout-minutes': { type: 'string' },
      'scale-timeout-minutes': { type: 'string' },
      'overhead-timeout-minutes': { type: 'string' },
      'memory-timeout-minutes': { type: 'string' },
      'discover-timeout-minutes': { type: 'string' },
      'discover-datasets': { type: 'string' },
      'pitr-timeout-minutes': { type: 'string' },
      'window-reps': { type: 'string' },
      'wide-tables': { type: 'string' },
      'wide-tenants': { type: 'string' },
      'wide-victims': { type: 'string' },
      'wide-rows': { type: 'string' },
      'wide-timeout-minutes': { type: 'string' },
      seed: { type: 'string' },
      'skip-ideal': { type: 'boolean' },
      'skip-product': { type: 'boolean' },
      'skip-overhead': { type: 'boolean' },
      'skip-scale': { type: 'boolean' },
      'skip-memory': { type: 'boolean' },
      'skip-live': { type: 'boolean' },
      'skip-wide': { type: 'boolean' },
      'skip-units': { type: 'boolean' },
      'skip-discover': { type: 'boolean' },
      'skip-pitr': { type: 'boolean' },
      'skip-window': { type: 'boolean' },
      'fresh-data': { type: 'boolean' },
      keep: { type: 'boolean' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const quick = !!values.quick;
  const int = (name: string, value: string | undefined, fallback: number, min = 0): number => {
    if (value === undefined) return fallback;
    const n = Number(value.replace(/_/g, ''));
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} '${value}': an integer >= ${min}`);
    return n;
  };
  const optional = (name: string, value: string | undefined) =>
    value === undefined ? undefined : int(name, value, 0, 1);
  return {
    quick,
    tenants: int('tenants', values.tenants, quick ? 60 : 2000, 10),
    rows: int('rows', values.rows, quick ? 25_000 : 3_300_000, 1000),
    victims: int('victims', values.victims, quick ? 6 : 400, 1),
    empty: int('empty', values.empty, quick ? 4 : 20, 1),
    scale: int('scale', values.scale, quick ? 12 : 10_000, 1),
    bigRows: (values['big-rows'] ?? (quick ? '20000,100000' : '1000000,5000000'))
      .split(',')
      .map((s) => int('big-rows', s.trim(), 0, 1000)),
    concurrency: optional('concurrency', values.concurrency),
    // --quick: groups of 2, so that its few tenants still make several children (and continue-as-new, below).
    groupSize: optional('group-size', values['group-size']) ?? (quick ? 2 : undefined),
    scaleConcurrency: optional('scale-concurrency', values['scale-concurrency']),
    // --quick restores fewer tenants than a run holds by default: a smaller run size still exercises continue-as-new.
    childrenPerRun: optional('children-per-run', values['children-per-run']) ?? (quick ? 4 : undefined),
    baselineSeconds: int('baseline-seconds', values['baseline-seconds'], quick ? 4 : 15, 1),
    writerConnections: int('writer-connections', values['writer-connections'], 2, 1),
    timeoutMinutes: int('timeout-minutes', values['timeout-minutes'], quick ? 3 : 12, 1),
    scaleTimeoutMinutes: int('scale-timeout-minutes', values['scale-timeout-minutes'], quick ? 3 : 6, 1),
    overheadTimeoutMinutes: int('overhead-timeout-minutes', values['overhead-timeout-minutes'], quick ? 3 : 5, 1),
    memoryTimeoutMinutes: int('memory-timeout-minutes', values['memory-timeout-minutes'], quick ? 3 : 8, 1),
    discoverTimeoutMinutes: int('discover-timeout-minutes', values['discover-timeout-minutes'], quick ? 3 : 10, 1),
    pitrTimeoutMinutes: int('pitr-timeout-minutes', values['pitr-timeout-minutes'], quick ? 5 : 15, 1),
    windowReps: int('window-reps', values['window-reps'], 3, 1),
    discoverDatasets: (
      values['discover-datasets'] ??
      ['main', values['skip-wide'] ? '' : 'wide', values['skip-scale'] ? '' : 'scale'].filter(Boolean).join(',')
    )
      .split(',')
      .map((d) => d.trim())
      .filter((d) => {
        if (!['main', 'wide', 'scale'].includes(d)) throw new Error(`--discover-datasets '${d}': main, wide or scale`);
        return true;
      }),
    wide: {
      tables: int('wide-tables', values['wide-tables'], quick ? 24 : 120, 2),
      tenants: int('wide-tenants', values['wide-tenants'], quick ? 30 : 600, 2),
      victims: int('wide-victims', values['wide-victims'], quick ? 6 : 120, 1),
      rowsPerTable: int('wide-rows', values['wide-rows'], quick ? 2 : 5, 1),
      timeoutMinutes: int('wide-timeout-minutes', values['wide-timeout-minutes'], quick ? 3 : 10, 1),
    },
    seed: int('seed', values.seed, 42),
    skip: {
      ideal: !!values['skip-ideal'],
      product: !!values['skip-product'],
      overhead: !!values['skip-overhead'],
      scale: !!values['skip-scale'],
      memory: !!values['skip-memory'],
      live: !!values['skip-live'],
      wide: !!values['skip-wide'],
      units: !!values['skip-units'],
      discover: !!values['skip-discover'],
      pitr: !!values['skip-pitr'],
      window: !!values['skip-window'],
    },
    freshData: !!values['fresh-data'],
    keep: !!values.keep,
    json: !!values.json,
    out: values.out,
  };
}
