/** Small formatting helpers and the result table (plain text, also valid Markdown). */

export const seconds = (ms: number | undefined) =>
  ms === undefined || !Number.isFinite(ms) ? 'n/a' : `${(ms / 1000).toFixed(1)} s`;
export const millis = (ms: number | undefined) =>
  ms === undefined || !Number.isFinite(ms) ? 'n/a' : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
export const count = (n: number | undefined) => (n === undefined ? 'n/a' : Math.round(n).toLocaleString('en-US'));
export const ratio = (r: number | undefined) => (r === undefined || !Number.isFinite(r) ? 'n/a' : `${r.toFixed(2)}x`);
export const mb = (kb: number | undefined) => (kb === undefined ? 'n/a' : `${Math.round(kb / 1024)} MB`);

export function percentile(values: number[], p: number): number | undefined {
  if (!values.length) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

export interface Row {
  section?: string;
  metric: string;
  value: string;
  target?: string;
  verdict?: string;
  note?: string;
}

/** A Markdown table: readable in a terminal and pasteable into the README. */
export function table(rows: Row[]): string {
  const header = ['metric', 'value', 'target', 'verdict', 'notes'];
  const body = rows.map((r) => [
    r.section ? `**${r.section}**` : r.metric,
    r.section ? '' : r.value,
    r.target ?? '',
    r.verdict ?? '',
    r.note ?? '',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

export function verdict(met: boolean | undefined): string {
  if (met === undefined) return 'NOT MEASURED';
  return met ? 'met' : 'MISSED';
}
