import { count, mb, millis, ratio, seconds, verdict, type Row } from '../format';
import type { BenchResults } from '../results';
import { statusNote } from './status-note';

/** Sections 7 to 9: discover, point in time, the incident window. */
export function renderDiscoverPointInTimeWindow(r: BenchResults, rows: Row[]): void {
  const d = r.dataset;
  const dsc = r.discover;
  // Small datasets take milliseconds.
  const time = (ms: number | undefined) => (ms !== undefined && ms < 1000 ? millis(ms) : seconds(ms));
  if (dsc?.runs.length) {
    for (const d of dsc.runs) {
      const what = `${d.dataset}: ${count(d.tenantsInBackup)} tenants, ${count(d.tables)} tables (${count(d.paths)} paths), ${count(d.rowsRead)} rows`;
      if (d.status !== 'ok' && d.wallMs === undefined) {
        rows.push({ metric: what, value: 'n/a', note: statusNote(d) });
        continue;
      }
      rows.push({
        metric: what,
        value: ratio(d.ratio),
        target: d.dataset === 'main' ? '<= 1.5' : '',
        verdict: d.dataset === 'main' ? verdict(d.ratio === undefined ? undefined : d.ratio <= 1.5) : '',
        note: [
          `discover ${time(d.wallMs)} (CLI to exit; tables ${time(d.compareMs)}, plan ${time(d.planMs)}, summary ${time(d.summarizeMs)}), baseline ${time(d.baselineMs)}`,
          `tables alone / baseline ${ratio(d.compareRatio)}`,
          `discover / baseline along every path ${ratio(d.ratioAllPaths)} (${time(d.baselineAllPathsMs)})`,
          `found ${d.counts?.absent ?? 'n/a'} absent of ${d.expectedAbsent ?? 'n/a'} deleted`,
          d.status !== 'ok' ? statusNote(d) : '',
        ]
          .filter(Boolean)
          .join('; '),
      });
      rows.push({
        metric: `  ${d.dataset}: worker peak RSS`,
        value: mb(d.peakRssKb),
        target: '<= 512 MB',
        verdict: verdict(d.peakRssKb === undefined ? undefined : d.peakRssKb <= 512 * 1024),
        note: `idle ${mb(d.idleRssKb)}`,
      });
    }
  } else rows.push({ metric: 'discover', value: 'n/a', note: statusNote(dsc) });

  const pit = r.pointInTime;
  rows.push({
    section: `8. Point in time: the same ${count(pit?.victims ?? d?.victimCount)} victims recovered from the stack's pgBackRest WAL archive (start --backup pgbackrest:... --at)`,
    metric: '',
    value: '',
  });
  if (pit && (pit.status === 'ok' || pit.product?.wallMs !== undefined)) {
    const sc = pit.scratch;
    rows.push({
      metric: 'scratch: point-in-time recovery / pg_restore of the dump',
      value: ratio(sc?.ratio),
      note: `recovery ${seconds(sc?.pitrMs)} (pgbackrest restore --db-include, WAL replay, checks); dump ${seconds(sc?.dumpMs)} (download, verify, pg_restore; ${sc?.dumpFrom ?? 'n/a'}): the reports' source.scratchMs`,
    });
    const e = pit.endToEnd;
    rows.push({
      metric: 'end to end: point in time / ideal',
      value: ratio(e?.pitrRatio),
      note: `start --wait ${seconds(e?.pitrWallMs)}; ideal ${seconds(e?.idealMs)} (section 1)`,
    });
    rows.push({
      metric: 'end to end: dump / ideal, same run',
      value: ratio(e?.dumpRatio),
      note: `start --wait ${seconds(e?.dumpWallMs)} (${sc?.dumpFrom ?? 'n/a'})`,
    });
    const rp = pit.recoveryPoint;
    rows.push({
      metric: 'recovery point: target - last transaction replayed',
      value: rp?.gapMs === undefined ? 'n/a' : `${rp.gapMs.toFixed(1)} ms`,
      note: `the report's gapMs; last transaction ${rp?.lastTransaction ?? 'n/a'}; stopped ${rp?.stopped ?? 'n/a'}`,
    });
    rows.push({
      metric: "  target - the bench's last write before it",
      value: rp?.lastWriteGapMs
        ? `${rp.lastWriteGapMs.min.toFixed(1)} - ${rp.lastWriteGapMs.max.toFixed(1)} ms`
        : 'n/a',
      note: `its commit lies between clock_timestamp() before COMMIT and after; ${count(pit.writtenAfterBackup)} rows written after the base backup${pit.writesAfterBackupRestored ? `, ${count(pit.writesAfterBackupRestored.issues)} back in live` : ''}`,
    });
    rows.push({
      metric: '  WAL segments restored',
      value: count(rp?.walSegmentsRestored),
      note: `VACUUM of the bench databases ${seconds(pit.quiesceMs)}, base backup (incr) ${seconds(pit.backupMs)} and archiving ${seconds(pit.archiveMs)} before the restore, not in its time`,
    });
    if (pit.status !== 'ok') rows.push({ metric: '  status', value: pit.status, note: statusNote(pit) });
  } else rows.push({ metric: 'point in time', value: 'n/a', note: statusNote(pit) });

  const win = r.window;
  rows.push({
    section: `9. Window: the incident's delta (narrowToWindow) vs one count(*) GROUP BY tenant pass over T0's owned tables; recovery of T0 and T1 NOT included (section 8 measures it)`,
    metric: '',
    value: '',
  });
  rows.push({
    metric: 'recovery of T0 and T1',
    value: 'not included',
    note: 'T0 and T1 stand in for the two point-in-time scratches as ordinary databases on the scratch server (T0 the backup restored, T1 a copy of it after a staged incident): recovery is paid once per scratch and depends on the archive (base backup, WAL to replay), not on the delta; section 8 measures it',
  });
  if (win?.status === 'ok' || win?.reps.length) {
    const inc = win.incident;
    const s1 = win.summary;
    rows.push({
      metric: `delta / baseline (median of ${win.reps.length} runs' ratios)`,
      value: ratio(win.ratio),
      note: `medians: delta ${seconds(win.deltaMs)}, baseline ${seconds(win.baselineMs)}; per run, delta / baseline: ${win.reps.map((x) => `${seconds(x.deltaMs)} / ${seconds(x.baselineMs)} = ${ratio(x.ratio)}`).join(', ')}`,
    });
    rows.push({
      metric: `  data: ${count(win.tables)} owned tables, ${count(win.tenants)} tenants`,
      value: `${count(win.rowsT0)} rows`,
      note: `T0 ${count(win.rowsT0)} rows, T1 ${count(win.rowsT1)}; per table: ${Object.entries(win.rowsPerTable ?? {})
        .map(([t, n]) => `${t.replace(/^app\./, '')} ${count(n)}`)
        .join(', ')}`,
    });
    rows.push({
      metric: '  incident and delta',
      value: `${count(s1?.touched)} tenants touched`,
      note: `incident: ${count(inc?.deletedTenants)} tenants purged (${count(inc?.deletedRows)} rows), ${Object.entries(
        inc?.updatedRows ?? {},
      )
        .map(([t, n]) => `${count(n)} ${t} updated`)
        .join(
          ', ',
        )}, ${count(inc?.addedRows)} rows added; delta: ${count(s1?.rows.deleted)} deleted, ${count(s1?.rows.changed)} changed, ${count(s1?.rows.added)} added, ${count(s1?.rows.conflicts)} conflicts`,
    });
    const ph = win.phases;
    if (ph)
      rows.push({
        metric: '  delta: phase 1 (delta) / phase 2 (narrow)',
        value: `${seconds(ph.t1Ms + ph.liveMs)} / ${seconds(ph.narrowMs)}`,
        note: `medians: T1 against T0 ${seconds(ph.t1Ms)}, live for the touched tenants ${seconds(ph.liveMs)}, narrowing ${seconds(ph.narrowMs)}, ANALYZE and summary ${seconds(ph.analyzeSummaryMs)}, setup ${millis(ph.setupMs)}; T1 against T0, largest (last run): ${Object.entries(
          ph.t1MsPerTable,
        )
          .sort((a, b) => b[1] - a[1])
          .slice(0, 3)
          .map(([t, ms]) => `${t.replace(/^app\./, '')} ${seconds(ms)}`)
          .join(', ')}`,
      });
    const last = win.reps.at(-1);
    if (last)
      rows.push({
        metric: '  other passes over T0 (last run)',
        value: `${seconds(last.hashPassMs)} hashing`,
        note: `count and hash sums per tenant, every owned table (discover's phase 1, one side); plain count(*) GROUP BY tenant_id on the ${win.plainTables?.length} tables with a tenant column ${millis(last.plainMs)} (the baseline on them ${millis(last.plainBaselineMs)}); baseline on the fresh copy, cold ${seconds(last.baselineColdMs)}; ${count(last.rowsKept)} rows left in the narrowed T0`,
      });
    if (win.status !== 'ok') rows.push({ metric: '  status', value: win.status, note: statusNote(win) });
  } else rows.push({ metric: 'window', value: 'n/a', note: statusNote(win) });
}
