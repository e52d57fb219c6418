/**
 * discover.md: for an operator, what was found and what to do with it, for a backup compared with live and for an
 * incident window.
 */
import { describeTarget } from './point-in-time';
import { DiscoverSummary, DiscoveredTenant } from './discover-classify';

/**
 * discover.md of an incident window: the classes say what the window did, and what a revert of it does
 * (activities/window.ts).
 */
function windowMarkdown(summary: DiscoverSummary, tenants: DiscoveredTenant[]): string {
  const { from, to } = summary.window!;
  const touched = tenants.filter((t) => t.class === 'absent' || t.class === 'partial' || t.class === 'changed');
  const lines = [
    `# Discover ${summary.discoverId}: the incident window`,
    '',
    `The database at T0 (${describeTarget(from)}, just before the incident) compared with the database at T1 (${describeTarget(to)}, just after it), both recovered from the WAL archive. Every difference below is something that committed inside the window: the incident, and any user's own change in the same minutes. What users did before T0 or after T1 is not in it.`,
    '',
    ...summary.warnings.map((w) => `**WARNING: ${w}**\n`),
    '| class | tenants | what the window did | what `start --from T0 --to T1` does |',
    '|---|---|---|---|',
    `| absent | ${summary.counts.absent} | deleted the tenant's root row (and what hung under it) | brings every deleted row back as it was at T0 |`,
    `| partial | ${summary.counts.partial} | deleted some of its rows, the root stayed | brings those rows back, nothing else |`,
    `| changed | ${summary.counts.changed} | changed rows (an UPDATE) | sets each back to its T0 version where live still holds the T1 version; a row changed or deleted again since is a conflict, left as it is |`,
    `| grown | ${summary.counts.grown} | only added rows | reported, never deleted (the restore role has no DELETE) |`,
    `| intact | ${summary.counts.intact} | nothing | nothing |`,
    `| new | ${summary.counts.new} | created the tenant | nothing |`,
    '',
    'Conflicts are found at the restore, against live as it is then: a deleted row whose key live holds with other content, a changed row that was changed or deleted since T1. Without `--conflicts report` a tenant with conflicts is not written at all; with it, everything but those rows is reverted and the report lists them.',
    '',
  ];
  if (touched.length) {
    lines.push(
      '## Tenants the window touched',
      '',
      '| tenant | class | deleted rows per table | changed rows per table |',
      '|---|---|---|---|',
    );
    const perTable = (m?: Record<string, number>) =>
      Object.entries(m ?? {})
        .map(([table, n]) => `${table} ${n}`)
        .join(', ');
    for (const t of touched.slice(0, 1000))
      lines.push(`| ${t.tenantId} | ${t.class} | ${perTable(t.missing)} | ${perTable(t.changed)} |`);
    if (touched.length > 1000) lines.push(`| ... | | ${touched.length - 1000} more in discover.json | |`);
  }
  return `${lines.join('\n')}\n`;
}

export function discoverMarkdown(summary: DiscoverSummary, tenants: DiscoveredTenant[]): string {
  if (summary.window) return windowMarkdown(summary, tenants);
  const lines = [
    `# Discover ${summary.discoverId}`,
    '',
    `Tenant root ${summary.tenantRoot}: ${summary.tenantsInBackup} tenants in the backup, ${summary.tenantsInLive} in live; ${summary.tables} tables compared.`,
    '',
    ...summary.warnings.map((w) => `**WARNING: ${w}**\n`),
    '| class | tenants | what it means |',
    '|---|---|---|',
    `| absent | ${summary.counts.absent} | root row gone from live: purged, or its account closed (restored by default: check the list) |`,
    `| partial | ${summary.counts.partial} | root present, rows of the backup missing: damage, or its users' own deletions since the backup; restored only with --allow-partial=<this number> (inserts only the missing rows, deletions included) |`,
    `| changed | ${summary.counts.changed} | same keys, other content: normal activity or damage; never restored |`,
    `| grown | ${summary.counts.grown} | only rows added since the backup: normal |`,
    `| intact | ${summary.counts.intact} | the same rows |`,
    `| new | ${summary.counts.new} | in live only, created after the backup |`,
    '',
  ];
  if (summary.mostAffected.length) {
    lines.push('## Tables most affected', '', '| table | rows missing from live | tenants |', '|---|---|---|');
    for (const m of summary.mostAffected) lines.push(`| ${m.table} | ${m.missingRows} | ${m.tenants} |`);
    lines.push('');
  }
  const damaged = tenants.filter((t) => t.class === 'absent' || t.class === 'partial');
  if (damaged.length) {
    lines.push('## Tenants to restore', '', '| tenant | class | missing rows per table |', '|---|---|---|');
    for (const t of damaged.slice(0, 1000))
      lines.push(
        `| ${t.tenantId} | ${t.class} | ${Object.entries(t.missing ?? {})
          .map(([table, n]) => `${table} ${n}`)
          .join(', ')} |`,
      );
    if (damaged.length > 1000) lines.push(`| ... | | ${damaged.length - 1000} more in discover.json |`);
  }
  return `${lines.join('\n')}\n`;
}
