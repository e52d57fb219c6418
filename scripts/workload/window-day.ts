/**
 * The incident-window act of the demo (issue 26, item 5), the workload's side: users deleting their own rows through
 * the day, an account closed, and the incident (a purge with the wrong id list and a wrong UPDATE, in one
 * transaction) with the WAL positions just before and just after it. Like incident.ts, this is the incident and the
 * users, not the product.
 */
import { connect, escapeLiteral } from '../../activities/db';
import { clockMicrosSql } from '../stack';
import { ownedTables } from './model';

/** A row a user deleted: its table and its key (model.ts's key expression). */
export interface UserDeletion {
  tenantId: string;
  table: string;
  key: string;
}

function idList(ids: string[]): string {
  for (const id of ids) if (!/^\d+$/.test(id)) throw new Error(`tenant id '${id}' is not an integer`);
  return `${escapeLiteral(`{${ids.join(',')}}`)}::bigint[]`;
}

/**
 * What a tenant's users delete on their own, in one transaction: a comment nobody answered (with its attachments), a
 * label taken off an issue, an app uninstalled; `pick` chooses which of the candidates (0: the oldest). Returns what
 * was deleted (a small tenant may have no comment or label: those are skipped).
 */
export async function usersDeleteOwnRows(url: string, tenantId: string, pick = 0): Promise<UserDeletion[]> {
  const t = idList([tenantId]);
  const client = await connect(url, 'workload-window-day');
  const out: UserDeletion[] = [];
  try {
    await client.query('BEGIN');
    const comment = await client.query<{ id: string }>(
      `SELECT c.id::text AS id FROM app.comments c JOIN app.issues i ON i.id = c.issue_id
         JOIN app.projects p ON p.id = i.project_id
        WHERE p.tenant_id = ANY (${t}) AND NOT EXISTS (SELECT 1 FROM app.comments r WHERE r.parent_id = c.id)
        ORDER BY c.id OFFSET $1 LIMIT 1`,
      [pick],
    );
    for (const { id } of comment.rows) {
      const files = await client.query<{ id: string }>(
        'DELETE FROM app.attachments WHERE comment_id = $1 RETURNING id::text AS id',
        [id],
      );
      for (const f of files.rows) out.push({ tenantId, table: 'app.attachments', key: f.id });
      await client.query('DELETE FROM app.comments WHERE id = $1', [id]);
      out.push({ tenantId, table: 'app.comments', key: id });
    }
    const label = await client.query<{ key: string }>(
      `DELETE FROM app.issue_labels x WHERE (x.issue_id, x.label_id) IN (
         SELECT l.issue_id, l.label_id FROM app.issue_labels l JOIN app.issues i ON i.id = l.issue_id
           JOIN app.projects p ON p.id = i.project_id
          WHERE p.tenant_id = ANY (${t}) ORDER BY l.issue_id, l.label_id OFFSET $1 LIMIT 1)
       RETURNING x.issue_id::text || ':' || x.label_id::text AS key`,
      [pick],
    );
    for (const r of label.rows) out.push({ tenantId, table: 'app.issue_labels', key: r.key });
    const app = await client.query<{ key: string }>(
      `DELETE FROM app.app_installations x WHERE x.id IN (
         SELECT a.id FROM app.app_installations a WHERE a.tenant_id = ANY (${t}) ORDER BY a.app_name, a.id OFFSET $1 LIMIT 1)
       RETURNING x.id::text AS key`,
      [pick],
    );
    for (const r of app.rows) out.push({ tenantId, table: 'app.app_installations', key: r.key });
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
  return out;
}

/** Of these deleted rows, the ones live holds again (by key, in the row's own table). */
export async function deletionsBack(url: string, deletions: UserDeletion[]): Promise<UserDeletion[]> {
  const client = await connect(url, 'workload-window-day');
  try {
    const back: UserDeletion[] = [];
    for (const d of deletions) {
      const t = ownedTables.find((x) => x.table === d.table);
      if (!t) throw new Error(`${d.table} is not a tenant-owned table of the workload`);
      const { rows } = await client.query(`SELECT 1 FROM ${t.table} x WHERE ${t.key} = $1`, [d.key]);
      if (rows.length) back.push(d);
    }
    return back;
  } finally {
    await client.end();
  }
}

export interface WindowIncident {
  /**
   * pg_current_wal_insert_lsn() just before the transaction began, and just after its COMMIT: where the next WAL record
   * starts, each time. Not pg_current_wal_lsn(): that is how far the WAL is written, which with synchronous_commit=off
   * (the stack's) lags behind the commits already made and stops at page boundaries, where no record starts.
   */
  lsnBefore: string;
  lsnAfter: string;
  /** The database's clock (RFC 3339, microseconds, UTC) at the same two moments. */
  timeBefore: string;
  timeAfter: string;
  /** Rows deleted per table, and issues the wrong UPDATE changed. */
  deleted: Record<string, number>;
  totalDeleted: number;
  updatedIssues: number;
  /** The transaction's id (txid_current()). */
  xid: string;
}

/**
 * The incident, in one transaction: every row of `purged` hard-deleted (children first, as incident.ts's purge), and a
 * wrong UPDATE that closes every issue of `updated`. The WAL insert position is read just before BEGIN and right after
 * COMMIT on the same session: the window [lsnBefore, lsnAfter] holds this transaction and nothing else of this database when
 * nothing else writes it meanwhile (the caller makes sure).
 */
export async function purgeAndWrongUpdate(url: string, purged: string[], updated: string[]): Promise<WindowIncident> {
  const ids = idList(purged);
  const client = await connect(url, 'workload-window-incident');
  const deleted: Record<string, number> = {};
  try {
    const lsn = async () =>
      (await client.query<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l')).rows[0].l;
    const clock = async () => (await client.query<{ t: string }>(clockMicrosSql)).rows[0].t;
    const timeBefore = await clock();
    const lsnBefore = await lsn();
    await client.query('BEGIN');
    const xid = (await client.query<{ x: string }>('SELECT txid_current()::text AS x')).rows[0].x;
    for (const t of [...ownedTables].reverse()) {
      const result = await client.query(
        `DELETE FROM ${t.table} WHERE ctid = ANY (ARRAY(SELECT x.ctid FROM ${t.from} WHERE ${t.tenant} = ANY (${ids})))`,
      );
      deleted[t.table] = result.rowCount ?? 0;
    }
    const update = await client.query(
      `UPDATE app.issues SET status = 'closed', metadata = metadata || '{"closed_by": "offboarding"}'
        WHERE project_id IN (SELECT id FROM app.projects WHERE tenant_id = ANY (${idList(updated)}))`,
    );
    await client.query('COMMIT');
    const lsnAfter = await lsn();
    const timeAfter = await clock();
    return {
      lsnBefore,
      lsnAfter,
      timeBefore,
      timeAfter,
      deleted,
      totalDeleted: Object.values(deleted).reduce((a, b) => a + b, 0),
      updatedIssues: update.rowCount ?? 0,
      xid,
    };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await client.end();
  }
}

/** LSN text (X/Y) as a number, to compare two positions; undefined when it is not an LSN. */
export function lsnValue(lsn: string): bigint | undefined {
  const m = /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(lsn.trim());
  return m ? (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`) : undefined;
}

/**
 * Whether the window [from, to] (two LSNs, or two times) lies inside the incident's captured bounds, and from is
 * before to. Times are compared to the microsecond.
 */
export function windowWithin(from: string, to: string, incident: WindowIncident): boolean {
  const lsns = [from, to].map(lsnValue);
  if (lsns[0] !== undefined && lsns[1] !== undefined)
    return lsns[0] >= lsnValue(incident.lsnBefore)! && lsns[1] <= lsnValue(incident.lsnAfter)! && lsns[0] < lsns[1];
  const micros = (t: string) => {
    const m = /^(.*?)(?:\.(\d{1,6}))?(Z|[+-]\d\d:?\d\d)$/.exec(t.trim());
    if (!m) return Number.NaN;
    return Date.parse(`${m[1]}${m[3]}`) * 1000 + Number((m[2] ?? '').padEnd(6, '0'));
  };
  const [a, b] = [micros(from), micros(to)];
  return a >= micros(incident.timeBefore) && b <= micros(incident.timeAfter) && a < b;
}
