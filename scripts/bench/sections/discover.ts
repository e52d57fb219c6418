import { mb, ratio, seconds } from '../format';
import { wideDataset } from '../wide';
import { discoverAvailable, discoverSideBySide } from '../discover';
import { say } from '../pg';
import { runTag, logsDir, retrying, type BenchContext } from '../context';

/** 7. discover against count(*) GROUP BY per table, on each dataset. */
export async function discoverSection({ options, results, dataset, problems }: BenchContext): Promise<void> {
  if (options.skip.discover) results.discover = { status: 'skipped', runs: [] };
  else if (!(await discoverAvailable()))
    results.discover = {
      status: 'not-available',
      reason: "'tenant-restore discover' is not a CLI command of this build",
      runs: [],
    };
  else {
    results.discover = { status: 'ok', runs: [] };
    const sets: Array<{ name: string; source: string; postDeletion: string; absent: number }> = [];
    const want = (name: string) => options.discoverDatasets.includes(name);
    if (want('main'))
      sets.push({
        name: 'main',
        source: dataset.source,
        postDeletion: dataset.postDeletion,
        absent: dataset.victims.length + dataset.empties.length,
      });
    try {
      if (want('wide')) {
        const wide = await retrying('wide dataset', () => wideDataset({ ...options.wide, fresh: false }));
        sets.push({
          name: 'wide',
          source: wide.source,
          postDeletion: wide.postDeletion,
          absent: wide.victims.length,
        });
      }
      if (want('scale')) {
        const scale = await retrying('scale dataset', () =>
          wideDataset({ tables: 6, tenants: options.scale, victims: options.scale, rowsPerTable: 3, fresh: false }),
        );
        sets.push({
          name: 'scale',
          source: scale.source,
          postDeletion: scale.postDeletion,
          absent: scale.victims.length,
        });
      }
    } catch (error) {
      problems.push(`discover: ${(error as Error).message}`);
    }
    for (const set of sets) {
      const r = await discoverSideBySide({
        dataset: set.name,
        scratch: set.source,
        liveTemplate: set.postDeletion,
        expectedAbsent: set.absent,
        runTag,
        logsDir,
        timeoutMinutes: options.discoverTimeoutMinutes,
        keep: options.keep,
      });
      results.discover.runs.push(r);
      if (r.status !== 'ok') {
        problems.push(`discover ${set.name}: ${r.reason}`);
        results.discover.status = r.status;
        results.discover.reason = `${set.name}: ${r.reason}`;
      } else
        say(
          `discover ${set.name}: ${seconds(r.wallMs)} (tables ${seconds(r.compareMs)}), baseline ${seconds(r.baselineMs)}: ${ratio(r.ratio)}; worker peak RSS ${mb(r.peakRssKb)}`,
        );
    }
  }
}
