import { count, millis, ratio, seconds, verdict, type Row } from '../format';
import type { BenchResults } from '../results';
import { statusNote } from './status-note';

/** Sections 3 to 6: memory, scale, wide schema, one unit alone. */
export function renderMemoryScaleWideUnits(r: BenchResults, rows: Row[]): void {
  const o = r.options;
  if (!(r.memory ?? []).length) rows.push({ metric: 'memory', value: 'n/a', note: 'skipped' });
  else
    rows.push({
      metric: 'growth smallest to largest',
      value: r.targets?.[3]?.value ?? 'n/a',
      target: 'flat (<= 1.25x)',
      verdict: verdict(r.targets?.[3]?.met),
    });

  const s = r.scale;
  rows.push({
    section: `4. Scale: one bulk restore of ${count(s?.requested ?? o.scale)} small tenants (${count(s?.victimRows)} rows, 6 tables + root)`,
    metric: '',
    value: '',
  });
  if (s?.status === 'ok') {
    if (s.ideal)
      rows.push({
        metric: 'ideal: total',
        value: seconds(s.ideal.totalMs),
        note: `pg_restore ${seconds(s.ideal.pgRestoreMs)} + COPY ${seconds(s.ideal.copyMs)}`,
      });
    rows.push({
      metric: 'product: wall time',
      value: seconds(s.wallMs),
      note: `concurrency ${s.concurrency}; ${millis(s.wallMs! / s.requested)} per tenant`,
    });
    rows.push({ metric: 'ratio product / ideal', value: ratio(s.ratio) });
    rows.push({
      metric: 'continue-as-new runs',
      value: count(s.profile?.runs),
      target: 'no history limit',
      verdict: 'met',
      note: s.profile
        ? `largest run history: ${count(Math.max(...s.profile.historyEventsPerRun))} events (limit 51,200)`
        : undefined,
    });
  } else {
    rows.push({
      metric: 'bulk restore',
      value: s?.wallMs ? `> ${seconds(s.wallMs)}` : 'n/a',
      verdict: s?.status === 'failed' || s?.status === 'timed-out' ? 'MISSED' : undefined,
      note: statusNote(s),
    });
    if (s?.profile)
      rows.push({
        metric: 'continue-as-new runs so far',
        value: count(s.profile.runs),
        note: `largest run history: ${count(Math.max(...s.profile.historyEventsPerRun))} events (limit 51,200)`,
      });
  }

  const w = r.wide;
  rows.push({
    section: `5. Wide schema: ${count(w?.tables)} tables, restore ${count(w?.victims)} of ${count(w?.tenants)} tenants (${count(w?.victimRows)} rows)`,
    metric: '',
    value: '',
  });
  if (w?.status === 'ok') {
    if (w.ideal)
      rows.push({
        metric: 'ideal: total',
        value: seconds(w.ideal.totalMs),
        note: `pg_restore ${seconds(w.ideal.pgRestoreMs)} + COPY ${seconds(w.ideal.copyMs)}`,
      });
    rows.push({ metric: 'product: total (start --wait)', value: seconds(w.product?.wallMs) });
    rows.push({
      metric: 'ratio product / ideal',
      value: ratio(w.ratio),
      target: '<= 1.5',
      verdict: verdict(r.targets?.[5]?.met),
    });
    const phases = w.product?.profile?.phases;
    if (phases?.total)
      rows.push({
        metric: '  per unit: total',
        value: millis(phases.total.medianMs),
        note: `median; copy ${millis(phases.copy?.medianMs)}, validate ${millis(phases.validate?.medianMs)}`,
      });
  } else rows.push({ metric: 'wide schema', value: 'n/a', note: statusNote(w) });

  const u = r.units;
  rows.push({
    section: '6. One unit alone on the server: statements and time (copy + validate)',
    metric: '',
    value: '',
  });
  if (u?.status === 'ok') {
    for (const [name, p2] of [
      ['main', u.main],
      ['wide', u.wide],
    ] as const) {
      if (!p2) continue;
      rows.push({
        metric: `${name}: ${p2.tenantsPerUnit} tenants, ${p2.tables} tables, ${count(p2.rowsPerUnit)} rows`,
        value: `${Math.round(p2.statementsPerUnit)} statements`,
        note: `${p2.statementsPerTablePerUnit.toFixed(1)} statements and ${p2.msPerTablePerUnit.toFixed(1)} ms per table; copy ${millis(p2.copyMsPerUnit)}, validate ${millis(p2.validateMsPerUnit)} (mean of ${p2.units} units)`,
      });
    }
  } else rows.push({ metric: 'units', value: 'n/a', note: statusNote(u) });

  rows.push({
    section: '7. Discover: tenant-restore discover vs one count(*) GROUP BY tenant per owned table, both sides',
    metric: '',
    value: '',
  });
}
