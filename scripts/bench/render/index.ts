import { renderProductAndLive } from './product-and-live';
import { renderMemoryScaleWideUnits } from './memory-scale-wide-units';
import { renderDiscoverPointInTimeWindow } from './discover-pitr-window';
import { table, type Row } from '../format';
import type { BenchResults } from '../results';

/** The Markdown table printed on stdout and saved as logs/<run>/table.md. */
export function render(r: BenchResults): string {
  const rows: Row[] = [];
  renderProductAndLive(r, rows);
  renderMemoryScaleWideUnits(r, rows);
  renderDiscoverPointInTimeWindow(r, rows);
  const header = [
    `tenant-restore benchmark, ${r.startedAt} (${r.machine.cpus} CPUs, PostgreSQL ${r.machine.postgres}, load ${r.machine.loadAverageAtStart.join(' ')} at start)`,
    `command: ${r.command}`,
    r.productReadiness.ready ? '' : `PRODUCT NOT COMPLETE: ${r.productReadiness.gaps.join('; ')}`,
  ].filter(Boolean);
  return `${header.join('\n')}\n\n${table(rows)}`;
}
