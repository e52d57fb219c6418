import { count, mb, millis, ratio, seconds, verdict, type Row } from '../format';
import type { BenchResults } from '../results';
import { statusNote } from './status-note';

/** Sections 1 and 2: product against ideal, overhead, where the time goes, live protection. */
export function renderProductAndLive(r: BenchResults, rows: Row[]): void {
  const d = r.dataset;
  const o = r.options;
  rows.push({
    section: `1. Product vs ideal: restore ${count(d?.victimCount)} of ${count(d?.tenants)} tenants (${count(d?.victimRowsTotal)} of ${count(d?.totalRows)} rows, archive ${d ? Math.round(d.backupBytes / 1e6) : 'n/a'} MB)`,
    metric: '',
    value: '',
  });
  const ideal = r.ideal;
  if (ideal?.status === 'ok') {
    rows.push({
      metric: 'ideal: total',
      value: seconds(ideal.totalMs),
      note: `download ${seconds(ideal.downloadMs)} + pg_restore -j2 ${seconds(ideal.pgRestoreMs)} + COPY pipes ${seconds(ideal.copyMs)}`,
    });
    rows.push({ metric: 'ideal: rows/s', value: count(ideal.rowsPerSecond) });
  } else rows.push({ metric: 'ideal', value: 'n/a', note: statusNote(ideal) });
  const p = r.product;
  if (p?.status === 'ok') {
    rows.push({
      metric: 'product: total (start --wait)',
      value: seconds(p.wallMs),
      note: `${p.tenants?.restored}/${p.tenants?.total} tenants restored, validated, re-enabled; ${count(p.rowsVerifiedInLive)} rows verified in live`,
    });
    rows.push({ metric: 'product: rows/s', value: count(r.comparison?.productRowsPerSecond) });
  } else rows.push({ metric: 'product', value: 'n/a', note: statusNote(p) });
  const t0 = r.targets?.[0];
  rows.push({
    metric: 'ratio product / ideal',
    value: t0?.value ?? 'n/a',
    target: '<= 1.5 (aim <= 1.2)',
    verdict: verdict(t0?.met),
  });
  const ov = r.overhead;
  if (ov?.status === 'timed-out' && ov.perTenantMs !== undefined) {
    rows.push({
      metric: 'orchestration overhead per empty tenant',
      value: `<= ${millis(ov.perTenantMs)}`,
      note: `NOT FINISHED: elapsed / tenants restored so far (${ov.tenants?.restored}/${ov.tenants?.total}) at concurrency ${ov.concurrency}`,
    });
  } else if (ov?.status === 'ok') {
    rows.push({
      metric: `orchestration overhead per empty tenant`,
      value: millis(ov.perTenantMs),
      note: `${ov.tenants?.total} tenants with only a root row at concurrency ${ov.concurrency}: tenant window / N; wall/N ${millis(ov.perTenantWallMs)}, median child latency ${millis(ov.medianTenantMs)}`,
    });
  } else rows.push({ metric: 'orchestration overhead per empty tenant', value: 'n/a', note: statusNote(ov) });

  if (p?.profile) {
    const pr = p.profile;
    rows.push({
      section: `Where the product's time goes (main restore${p.status === 'ok' ? '' : `, ${p.status}: partial`})`,
      metric: '',
      value: '',
    });
    rows.push({ metric: 'CLI start until workflow started', value: seconds(pr.cliToWorkflowMs) });
    const act = (name: string, label: string, note?: string) => {
      const a = pr.activities[name];
      if (a)
        rows.push({
          metric: label,
          value: seconds(a.wallMs),
          note:
            [a.failedAttempts ? `${a.failedAttempts} retried attempts` : '', note ?? ''].filter(Boolean).join('; ') ||
            undefined,
        });
    };
    act('stageTenantList', 'stage tenant list');
    act(
      'prepareScratch',
      'scratch: download, verify, pg_restore',
      ideal?.status === 'ok'
        ? `ideal's download + pg_restore: ${seconds(ideal.downloadMs! + ideal.pgRestoreMs!)}`
        : undefined,
    );
    act('buildRestorePlan', 'plan');
    rows.push({
      metric: 'tenant window (first child start to report)',
      value: seconds(pr.tenantWindowMs),
      note: ideal?.status === 'ok' ? `ideal's COPY pipes: ${seconds(ideal.copyMs)}` : undefined,
    });
    for (const phase of ['preflight', 'copy', 'validate', 'reenable', 'total'] as const) {
      const s = pr.phases[phase];
      if (s)
        rows.push({
          metric: `  per child: ${phase}`,
          value: `${seconds(s.sumMs)} summed`,
          note: `median ${millis(s.medianMs)}, p95 ${millis(s.p95Ms)}, max ${millis(s.maxMs)}`,
        });
    }
    if (!Object.keys(pr.phases).length)
      rows.push({ metric: '  per child phases', value: 'n/a', note: 'the report has no per-child durations' });
    if (pr.throttle)
      rows.push({
        metric: '  adaptive throttling',
        value: pr.throttle.on ? `${seconds(pr.throttle.waitedMs)} waited` : 'off',
        note: pr.throttle.on
          ? 'summed over children: time the steps waited for a busy live'
          : 'TENANT_RESTORE_THROTTLE=off',
      });
    act('writeRestoreReport', 'report');
    act('dropScratch', 'drop scratch');
    rows.push({ metric: 'report start until CLI exit', value: seconds(pr.afterLastTenantMs) });
    for (const st of pr.dbStatements?.statements.slice(0, 6) ?? []) {
      rows.push({
        metric: `  db: ${st.statement.slice(0, 70)}`,
        value: `${seconds(st.ms)} session time`,
        note: `${Math.round(st.share * 100)}% of sampled product session time`,
      });
    }
  }

  rows.push({
    section: `2. Live protection: workload writer (${o.writerConnections} sessions) on other tenants`,
    metric: '',
    value: '',
  });
  const l = r.live;
  if (l?.before && l.during) {
    rows.push({
      metric: 'writer before restore: p50 / p99',
      value: `${millis(l.before.p50)} / ${millis(l.before.p99)}`,
      note: `${count(l.before.count)} transactions over ${o.baselineSeconds - 1} s`,
    });
    rows.push({
      metric: 'writer during restore: p50 / p99',
      value: `${millis(l.during.p50)} / ${millis(l.during.p99)}`,
      note: `${count(l.during.count)} transactions; max ${millis(l.during.max)}`,
    });
    if (l.duringTenantWindow)
      rows.push({
        metric: '  of which tenant window: p50 / p99',
        value: `${millis(l.duringTenantWindow.p50)} / ${millis(l.duringTenantWindow.p99)}`,
        note: 'after scratch and plan',
      });
    rows.push({
      metric: 'p99 during / before',
      value: ratio(l.p99Ratio),
      target: '<= 2.0',
      verdict: verdict(r.targets?.[1]?.met),
      note: `p50 during / before ${ratio(l.during.p50 / l.before.p50)}${l.writer?.errors ? `; ${l.writer.errors} writer errors` : ''}`,
    });
  } else rows.push({ metric: 'writer latency', value: 'n/a', note: statusNote(l) });

  rows.push({ section: '3. Memory: worker peak RSS restoring ONE big tenant', metric: '', value: '' });
  for (const m of r.memory ?? []) {
    if (m.status === 'ok')
      rows.push({
        metric: `tenant of ${count(m.rows)} rows`,
        value: mb(m.peakRssKb),
        target: '<= 512 MB',
        verdict: verdict(m.peakRssKb! <= 512 * 1024),
        note: `idle ${mb(m.idleRssKb)}, VmHWM ${mb(m.hwmKb)} (incl. startup bundling), ${seconds(m.wallMs)}, ${count(m.rowsRestored)} rows restored`,
      });
    if (m.productRowsPerSecond && m.idealRowsPerSecond)
      rows.push({
        metric: `  rows/s, product / ideal COPY`,
        value: ratio(m.productRowsPerSecond / m.idealRowsPerSecond),
        target: '>= 0.5',
        verdict: verdict(m.productRowsPerSecond / m.idealRowsPerSecond >= 0.5),
        note: `product ${count(m.productRowsPerSecond)} rows/s (start --wait, validation included), ideal ${count(m.idealRowsPerSecond)} rows/s`,
      });
    else rows.push({ metric: `tenant of ${count(m.rows)} rows`, value: 'n/a', note: statusNote(m) });
  }
}
