import { count, mb, ratio } from './format';
import type { Options } from './options';
import type { BenchResults } from './results';

/** The figures across sections (product / ideal, memory growth, ...) and each target, met or not. */
export function figuresAndTargets(results: BenchResults, options: Options): void {
  const ideal = results.ideal?.status === 'ok' ? results.ideal : undefined;
  const product = results.product?.status === 'ok' ? results.product : undefined;
  const timedOutMain = results.product?.status === 'timed-out' ? results.product : undefined;
  results.comparison = {
    ratio: ideal && product?.wallMs ? product.wallMs / ideal.totalMs! : undefined,
    ratioAtLeast: ideal && timedOutMain?.wallMs ? timedOutMain.wallMs / ideal.totalMs! : undefined,
    productRowsPerSecond:
      product?.rowsVerifiedInLive && product.wallMs ? product.rowsVerifiedInLive / (product.wallMs / 1000) : undefined,
    idealRowsPerSecond: ideal?.rowsPerSecond,
  };
  const memOk = (results.memory ?? []).filter((m) => m.status === 'ok' && m.peakRssKb);
  const memMax = memOk.length ? Math.max(...memOk.map((m) => m.peakRssKb!)) : undefined;
  const memGrowth = memOk.length >= 2 ? memOk[memOk.length - 1].peakRssKb! / memOk[0].peakRssKb! : undefined;
  const liveOk = results.live?.status === 'ok' ? results.live : undefined;
  const bigRate = (results.memory ?? []).filter((m) => m.productRowsPerSecond && m.idealRowsPerSecond).at(-1);
  const within = (value: number | undefined, limit: number) => (value === undefined ? undefined : value <= limit);
  const discoverOk = (results.discover?.runs ?? []).filter((d) => d.status === 'ok');
  const discoverMain = discoverOk.find((d) => d.dataset === 'main');
  // The run with the most tenants: the target is RSS flat in tenants, <= 512 MB at 10,000.
  const discoverRssMax = discoverOk
    .filter((d) => d.peakRssKb)
    .sort((a, b) => (b.tenantsInBackup ?? 0) - (a.tenantsInBackup ?? 0))[0];
  results.targets = [
    {
      name: 'product / ideal',
      target: '<= 1.5 (aim <= 1.2)',
      value:
        results.comparison.ratio !== undefined
          ? ratio(results.comparison.ratio)
          : results.comparison.ratioAtLeast !== undefined
            ? `> ${ratio(results.comparison.ratioAtLeast)} (did not finish)`
            : 'n/a',
      met:
        results.comparison.ratio !== undefined
          ? results.comparison.ratio <= 1.5
          : results.comparison.ratioAtLeast !== undefined && results.comparison.ratioAtLeast > 1.5
            ? false
            : undefined,
    },
    {
      name: 'writer p99 during / before',
      target: '<= 2.0',
      value: ratio(liveOk?.p99Ratio),
      met: within(liveOk?.p99Ratio, 2.0),
    },
    {
      name: 'worker peak RSS (largest tenant)',
      target: '<= 512 MB',
      value: mb(memMax),
      met: memMax === undefined ? undefined : memMax <= 512 * 1024,
    },
    {
      name: 'worker peak RSS growth, smallest to largest tenant',
      target: 'flat (<= 1.25x)',
      value: ratio(memGrowth),
      met: within(memGrowth, 1.25),
    },
    {
      name: `scale: ${count(options.scale)} small tenants, product / ideal`,
      target: 'finishes, no history limit',
      value: results.scale?.ratio !== undefined ? ratio(results.scale.ratio) : (results.scale?.status ?? 'n/a'),
      met:
        results.scale?.status === 'ok'
          ? true
          : results.scale?.status === 'failed' || results.scale?.status === 'timed-out'
            ? false
            : undefined,
    },
    {
      name: `wide schema (${results.wide?.tables ?? options.wide.tables + 1} tables): product / ideal`,
      target: '<= 1.5',
      value: ratio(results.wide?.ratio),
      met: within(results.wide?.ratio, 1.5),
    },
    {
      name: 'largest tenant: product rows/s / ideal rows/s',
      target: '>= 0.5',
      value: bigRate ? ratio(bigRate.productRowsPerSecond! / bigRate.idealRowsPerSecond!) : 'n/a',
      met: bigRate ? bigRate.productRowsPerSecond! / bigRate.idealRowsPerSecond! >= 0.5 : undefined,
    },
    {
      name: 'discover / count(*) GROUP BY per table (main dataset)',
      target: '<= 1.5',
      value: ratio(discoverMain?.ratio),
      met: within(discoverMain?.ratio, 1.5),
    },
    {
      name: `discover: worker peak RSS (up to ${count(discoverRssMax?.tenantsInBackup)} tenants)`,
      target: '<= 512 MB',
      value: mb(discoverRssMax?.peakRssKb),
      met: discoverRssMax?.peakRssKb === undefined ? undefined : discoverRssMax.peakRssKb <= 512 * 1024,
    },
  ];
}
