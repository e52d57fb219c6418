import { defaultConcurrency } from '../../../workflows/definitions';
import type { BenchContext } from '../context';
import { sideBySide } from '../side-by-side';

/** 4. Wide schema, and 5. scale: ideal and product side by side on generated many-table data. */
export async function wideAndScaleSections({ options, results, problems }: BenchContext): Promise<void> {
  if (options.skip.wide) results.wide = { status: 'skipped' };
  else if (!results.productReadiness.ready)
    results.wide = { status: 'not-available', reason: 'the product is not complete' };
  else {
    const w = options.wide;
    results.wide = await sideBySide('wide', { ...w, fresh: options.freshData }, options, {
      concurrency: options.concurrency,
      timeoutMinutes: w.timeoutMinutes,
    });
    if (results.wide.status !== 'ok') problems.push(`wide: ${results.wide.reason}`);
  }
  if (options.skip.scale) results.scale = { status: 'skipped', concurrency: 0, requested: options.scale };
  else if (!results.productReadiness.ready)
    results.scale = {
      status: 'not-available',
      reason: 'the product is not complete',
      concurrency: 0,
      requested: options.scale,
    };
  else {
    // Small tenants, not empty: a few rows in each of six tables (two of them children), every tenant restored.
    const concurrency = options.scaleConcurrency ?? options.concurrency ?? defaultConcurrency;
    const r = await sideBySide(
      'scale',
      { tables: 6, tenants: options.scale, victims: options.scale, rowsPerTable: 3, fresh: options.freshData },
      options,
      { concurrency, childrenPerRun: options.childrenPerRun, timeoutMinutes: options.scaleTimeoutMinutes },
    );
    results.scale = {
      ...(r.product ?? {}),
      status: r.status,
      reason: r.reason,
      concurrency,
      requested: options.scale,
      ideal: r.ideal,
      ratio: r.ratio,
      victimRows: r.victimRows,
    };
    if (r.status !== 'ok') problems.push(`scale: ${r.reason}`);
  }
}
