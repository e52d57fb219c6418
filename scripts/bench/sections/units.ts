import { profileUnits } from '../unit-profile';
import { wideDataset } from '../wide';
import { say } from '../pg';
import { defaultGroupSize } from '../../../workflows/definitions';
import type { BenchContext } from '../context';

/** 5. One unit, alone: statements per unit and per table. */
export async function unitsSection({ options, results, dataset, problems }: BenchContext): Promise<void> {
  if (options.skip.units) results.units = { status: 'skipped' };
  else {
    try {
      say('units: one unit of each dataset, alone on the server, every statement timed');
      const size = options.groupSize ?? defaultGroupSize;
      results.units = {
        status: 'ok',
        main: await profileUnits({
          scratch: dataset.source,
          liveTemplate: dataset.postDeletion,
          tenantIds: dataset.victims,
          size,
          units: 2,
          chunkRows: 200_000,
        }),
      };
      if (!options.skip.wide) {
        const wide = await wideDataset({ ...options.wide, fresh: false });
        results.units.wide = await profileUnits({
          scratch: wide.source,
          liveTemplate: wide.postDeletion,
          tenantIds: wide.victims,
          size,
          units: 2,
        });
      }
    } catch (error) {
      results.units = { status: 'failed', reason: (error as Error).message };
      problems.push(`units: ${(error as Error).message}`);
    }
  }
}
