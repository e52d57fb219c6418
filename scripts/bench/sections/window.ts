import { ratio, seconds } from '../format';
import { windowSideBySide } from '../window';
import { say } from '../pg';
import { runTag, type BenchContext } from '../context';

/** 9. The incident window's delta against one count(*) GROUP BY pass. */
export async function windowSection({ options, results, dataset, problems }: BenchContext): Promise<void> {
  if (options.skip.window) results.window = { status: 'skipped', reps: [] };
  else {
    results.window = await windowSideBySide({
      dataset,
      runTag,
      reps: options.windowReps,
      fresh: options.freshData,
      keep: options.keep,
    });
    const w = results.window;
    if (w.status !== 'ok') problems.push(`window: ${w.reason}`);
    else
      say(
        `window: delta ${seconds(w.deltaMs)}, baseline ${seconds(w.baselineMs)}: ${ratio(w.ratio)} (median of ${w.reps.length})`,
      );
  }
}
