/**
 * `tenant-restore when`'s reading of `pg_waldump` (PostgreSQL 15) text output: pure functions, no I/O, so that the
 * formats are unit-tested on lines captured from real output (test/unit/when-waldump.test.ts).
 *
 * `parseWaldumpLine` turns one line into an event (or nothing); `DeletionTracker` follows the root rows of the
 * requested tenants through the events, one at a time (the WAL is streamed, never held in memory), and says which
 * committed transaction deleted each. The formats it reads (pg_waldump 15, verified against real output):
 *
 *   rmgr: Heap  len (rec/tot): 390/390, tx: 26836, lsn: 0/9BC2B218, prev 0/9BC2B1E0, desc: UPDATE off 2 xmax 26836 flags 0x00 ; new off 18 xmax 0, blkref #0: rel 1663/35737/35738 blk 1, blkref #1: rel 1663/35737/35738 blk 0
 *   rmgr: Heap  ... desc: HOT_UPDATE off 3 xmax 26837 flags 0x20 ; new off 24 xmax 0, blkref #0: rel 1663/35737/35738 blk 0
 *   rmgr: Heap  ... desc: DELETE off 1 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/35737/35738 blk 0
 *   rmgr: Transaction ... tx: 26839, lsn: 0/9BC2B8E8, ... desc: COMMIT 2026-12-04 15:11:15.003408 UTC; subxacts: 26840
 *   rmgr: Transaction ... tx: 26838, lsn: 0/9BC2B850, ... desc: ABORT 2026-12-04 15:11:15.002835 UTC
 *
 * For a non-HOT UPDATE, blkref #0 is the new tuple's block and blkref #1 the old one's (absent when both are the same
 * block). A record of a subtransaction carries the subtransaction's xid (`tx:`); its top transaction's COMMIT lists it
 * in `subxacts:`, and a ROLLBACK TO SAVEPOINT writes an ABORT with the subtransaction's own xid.
 */
import { isoFromMicros, toMicros } from './input-contract';

/** A heap tuple's position: block and line pointer (a ctid). */
export interface TuplePosition {
  block: number;
  offset: number;
}

/** `<tablespace oid>/<database oid>/<relfilenode>`, as pg_waldump prints a relation. */
export type RelationPath = string;

export type WalEvent =
  | { kind: 'update'; xid: number; lsn: string; rel: RelationPath; from: TuplePosition; to: TuplePosition }
  | { kind: 'delete'; xid: number; lsn: string; rel: RelationPath; at: TuplePosition }
  | { kind: 'commit'; xid: number; lsn: string; time: string; subxacts: number[] }
  | { kind: 'abort'; xid: number; lsn: string; subxacts: number[] }
  /** Any other record written by a transaction: only its LSN matters (a transaction's first record). */
  | { kind: 'record'; xid: number; lsn: string };

const header =
  /^rmgr: (\S+)\s+len \(rec\/tot\):\s*\d+\/\s*\d+, tx:\s*(\d+), lsn: ([0-9A-F]+\/[0-9A-F]+), prev [0-9A-F]+\/[0-9A-F]+, desc: (.*)$/;
const blockRefs = /blkref #(\d+): rel (\d+\/\d+\/\d+)(?: fork \w+)? blk (\d+)/g;
// `UPDATE+INIT` / `HOT_UPDATE+INIT`: the new tuple is the first of a freshly initialised page.
const update = /^(HOT_UPDATE|UPDATE)(?:\+INIT)? off (\d+) .*?; new off (\d+)/;
const deletion = /^DELETE off (\d+)/;
// COMMIT_PREPARED / ABORT_PREPARED (two-phase commit) do not match: the space after the word is required.
const ending = /^(COMMIT|ABORT) (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \S+?);?(?: |$)(.*)$/;
const subxactList = /(?:^|; )subxacts:((?: \d+)+)/;

/** pg_waldump's `2026-12-04 15:11:15.003408 UTC` (run with TZ=UTC) → ISO 8601 to the microsecond. */
function walTime(text: string): string {
  const us = toMicros(text);
  return Number.isNaN(us) ? text : isoFromMicros(us);
}

/** One line of pg_waldump output → its event; undefined for lines that are not records or that no one wrote (tx 0). */
export function parseWaldumpLine(line: string): WalEvent | undefined {
  const m = header.exec(line);
  if (!m) return undefined;
  const [, rmgr, txText, lsn, desc] = m as unknown as [string, string, string, string, string];
  const xid = Number(txText);
  if (xid === 0) return undefined;
  if (rmgr === 'Heap') {
    const refs = new Map<number, { rel: string; block: number }>();
    for (const r of desc.matchAll(blockRefs)) refs.set(Number(r[1]), { rel: r[2]!, block: Number(r[3]) });
    const u = update.exec(desc);
    const newRef = refs.get(0);
    if (u && newRef) {
      // Non-HOT: #0 is the new block, #1 the old one when it differs. HOT: one block, always.
      const oldRef = refs.get(1) ?? newRef;
      return {
        kind: 'update',
        xid,
        lsn,
        rel: newRef.rel,
        from: { block: oldRef.block, offset: Number(u[2]) },
        to: { block: newRef.block, offset: Number(u[3]) },
      };
    }
    const d = deletion.exec(desc);
    if (d && newRef)
      return { kind: 'delete', xid, lsn, rel: newRef.rel, at: { block: newRef.block, offset: Number(d[1]) } };
  }
  if (rmgr === 'Transaction') {
    const e = ending.exec(desc);
    if (e) {
      const subs = subxactList.exec(e[3] ?? '');
      const subxacts = subs ? subs[1]!.trim().split(/\s+/).map(Number) : [];
      return e[1] === 'COMMIT'
        ? { kind: 'commit', xid, lsn, time: walTime(e[2]!), subxacts }
        : { kind: 'abort', xid, lsn, subxacts };
    }
  }
  return { kind: 'record', xid, lsn };
}

/** `0/3A000060` → a bigint, for ordering positions exactly. */
export function lsnNumber(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** A tenant's deletion, as the WAL says: the top transaction that committed it, when and where. */
export interface TenantDeletion {
  tenantId: string;
  /** The top-level xid (what txid_current() returned in the deleting session, modulo the epoch). */
  deletedBy: number;
  commitTime: string;
  commitLsn: string;
  /** The first WAL record of the deleting transaction (or of any of its subtransactions). */
  firstLsn: string;
}

interface Pending {
  xid: number;
  /** The position the row moved to (an update), or a deletion. */
  to?: TuplePosition;
  deleted?: { lsn: string };
}

interface Tracked {
  tenantId: string;
  /** The committed position of the root row's live version. */
  at: TuplePosition;
  /** Changes by transactions not yet ended, in WAL order: applied at their COMMIT, dropped at their ABORT. */
  pending: Pending[];
  deletion?: TenantDeletion;
}

const samePosition = (a: TuplePosition, b: TuplePosition) => a.block === b.block && a.offset === b.offset;

/**
 * Follows the root rows of some tenants through a stream of WAL events. An update or delete is provisional until its
 * transaction's COMMIT (with its subtransactions), and forgotten at an ABORT: an aborted DELETE leaves the row where it
 * was, an aborted UPDATE leaves it at its old position.
 */
export class DeletionTracker {
  private readonly tracked: Tracked[];
  /** First record of each transaction still open (bounded by the transactions in flight, not by the WAL's length). */
  private readonly firstLsn = new Map<number, string>();
  private lastLsn: string | undefined;
  private events = 0;

  constructor(
    private readonly rel: RelationPath,
    rows: Array<{ tenantId: string; at: TuplePosition }>,
  ) {
    this.tracked = rows.map((r) => ({ tenantId: r.tenantId, at: r.at, pending: [] }));
  }

  /** The row (if tracked and not yet deleted) whose current version, committed or not, is at `position`. */
  private find(position: TuplePosition): { row: Tracked } | undefined {
    for (const row of this.tracked) {
      if (row.deletion) continue;
      const current = [...row.pending].reverse().find((p) => p.to)?.to ?? row.at;
      if (samePosition(current, position)) return { row };
    }
    return undefined;
  }

  feed(event: WalEvent): void {
    this.events += 1;
    this.lastLsn = event.lsn;
    if (!this.firstLsn.has(event.xid)) this.firstLsn.set(event.xid, event.lsn);
    switch (event.kind) {
      case 'update':
      case 'delete': {
        if (event.rel !== this.rel) return;
        const hit = this.find(event.kind === 'update' ? event.from : event.at);
        if (!hit) return;
        hit.row.pending.push(
          event.kind === 'update' ? { xid: event.xid, to: event.to } : { xid: event.xid, deleted: { lsn: event.lsn } },
        );
        return;
      }
      case 'commit': {
        const family = new Set([event.xid, ...event.subxacts]);
        const first = [...family]
          .map((x) => this.firstLsn.get(x))
          .filter((l): l is string => !!l)
          .sort((a, b) => (lsnNumber(a) < lsnNumber(b) ? -1 : 1))[0];
        for (const row of this.tracked) {
          if (row.deletion) continue;
          for (const p of row.pending.filter((q) => family.has(q.xid))) {
            if (p.to) row.at = p.to;
            if (p.deleted)
              row.deletion = {
                tenantId: row.tenantId,
                deletedBy: event.xid,
                commitTime: event.time,
                commitLsn: event.lsn,
                firstLsn: first ?? p.deleted.lsn,
              };
          }
          row.pending = row.pending.filter((q) => !family.has(q.xid));
        }
        for (const x of family) this.firstLsn.delete(x);
        return;
      }
      case 'abort': {
        const family = new Set([event.xid, ...event.subxacts]);
        for (const row of this.tracked) row.pending = row.pending.filter((q) => !family.has(q.xid));
        for (const x of family) this.firstLsn.delete(x);
        return;
      }
      default:
        return;
    }
  }

  /** Per tenant (in the order given): its deletion, or undefined when it was not deleted (or not yet committed). */
  result(): { deletions: Array<{ tenantId: string; deletion?: TenantDeletion }>; lastLsn?: string; events: number } {
    return {
      deletions: this.tracked.map((r) => ({ tenantId: r.tenantId, ...(r.deletion ? { deletion: r.deletion } : {}) })),
      ...(this.lastLsn ? { lastLsn: this.lastLsn } : {}),
      events: this.events,
    };
  }
}

/** `(12,5)` (a ctid as text) → its position. */
export function parseCtid(text: string): TuplePosition {
  const m = /^\((\d+),(\d+)\)$/.exec(text.trim());
  if (!m) throw new Error(`not a ctid: ${text}`);
  return { block: Number(m[1]), offset: Number(m[2]) };
}

/** The WAL segment file holding `lsn` on `timeline` (segment size in bytes, 16 MB by default). */
export function walSegmentOf(lsn: string, timeline: number, segmentSize: number): string {
  const segno = lsnNumber(lsn) / BigInt(segmentSize);
  const perLog = 0x1_0000_0000n / BigInt(segmentSize);
  const hex = (n: bigint | number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(segno / perLog)}${hex(segno % perLog)}`;
}

/** The next WAL segment's name (same timeline). */
export function nextWalSegment(segment: string, segmentSize: number): string {
  const perLog = 0x1_0000_0000 / segmentSize;
  let log = parseInt(segment.slice(8, 16), 16);
  let seg = parseInt(segment.slice(16, 24), 16) + 1;
  if (seg >= perLog) {
    seg = 0;
    log += 1;
  }
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');
  return `${segment.slice(0, 8)}${hex(log)}${hex(seg)}`;
}

/** The last line of a timeline history file: `<parent timeline>\t<switchpoint LSN>\t<reason>`. */
export function timelineSwitch(history: string): { parent: number; switchpoint: string } | undefined {
  const lines = history
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const m = /^(\d+)\s+([0-9A-F]+\/[0-9A-F]+)/i.exec(lines.at(-1) ?? '');
  return m ? { parent: Number(m[1]), switchpoint: m[2]!.toUpperCase() } : undefined;
}
