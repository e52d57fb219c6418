/**
 * `tenant-restore when`'s reading of pg_waldump 15 output, on lines captured from real output of the stack's cluster
 * (PostgreSQL 15.20): a table `tenants` (relfilenode 35738 in database 35737) with rows at (0,1)..(0,6), then
 *   UPDATE id 2 (no room on its page: a non-HOT update to block 1, off 18)      xid 26836
 *   UPDATE id 3 (HOT, off 3 → 24), UPDATE id 4 → 103 (key changed: block 1)    xid 26837
 *   DELETE id 5, ROLLBACK                                                       xid 26838 (aborted)
 *   DELETE id 1; SAVEPOINT; DELETE id 2 (at its new place); RELEASE; COMMIT     xid 26839, subxact 26840
 *   DELETE id 3 (at its HOT place)                                              xid 26841
 * and, on another table, a ROLLBACK TO SAVEPOINT (the subtransaction's own ABORT).
 */
import { describe, expect, it } from 'vitest';
import {
  DeletionTracker,
  nextWalSegment,
  parseCtid,
  parseWaldumpLine,
  timelineSwitch,
  walSegmentOf,
} from '../../activities/when-waldump';

const sample = `rmgr: Heap        len (rec/tot):    371/   371, tx:      26835, lsn: 0/9BC2B000, prev 0/9BC2AFC0, desc: INSERT off 17 flags 0x00, blkref #0: rel 1663/35737/35738 blk 1
rmgr: Heap        len (rec/tot):     54/    54, tx:      26836, lsn: 0/9BC2B1E0, prev 0/9BC2B1B8, desc: LOCK off 2: xid 26836: flags 0x00 LOCK_ONLY EXCL_LOCK , blkref #0: rel 1663/35737/35738 blk 0
rmgr: Heap        len (rec/tot):    390/   390, tx:      26836, lsn: 0/9BC2B218, prev 0/9BC2B1E0, desc: UPDATE off 2 xmax 26836 flags 0x00 ; new off 18 xmax 0, blkref #0: rel 1663/35737/35738 blk 1, blkref #1: rel 1663/35737/35738 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:      26836, lsn: 0/9BC2B3B8, prev 0/9BC2B218, desc: COMMIT 2026-12-04 15:11:15.001000 UTC
rmgr: Heap2       len (rec/tot):     56/    56, tx:      26837, lsn: 0/9BC2B408, prev 0/9BC2B3E0, desc: PRUNE latestRemovedXid 26836 nredirected 0 ndead 1, blkref #0: rel 1663/35737/35738 blk 0
rmgr: Heap        len (rec/tot):    368/   368, tx:      26837, lsn: 0/9BC2B440, prev 0/9BC2B408, desc: HOT_UPDATE off 3 xmax 26837 flags 0x20 ; new off 24 xmax 0, blkref #0: rel 1663/35737/35738 blk 0
rmgr: Heap        len (rec/tot):     54/    54, tx:      26837, lsn: 0/9BC2B5B0, prev 0/9BC2B440, desc: LOCK off 4: xid 26837: flags 0x00 LOCK_ONLY EXCL_LOCK KEYS_UPDATED , blkref #0: rel 1663/35737/35738 blk 0
rmgr: Heap        len (rec/tot):    390/   390, tx:      26837, lsn: 0/9BC2B5E8, prev 0/9BC2B5B0, desc: UPDATE off 4 xmax 26837 flags 0x00 KEYS_UPDATED ; new off 19 xmax 0, blkref #0: rel 1663/35737/35738 blk 1, blkref #1: rel 1663/35737/35738 blk 0
rmgr: Btree       len (rec/tot):     64/    64, tx:      26837, lsn: 0/9BC2B770, prev 0/9BC2B5E8, desc: INSERT_LEAF off 42, blkref #0: rel 1663/35737/35743 blk 1
rmgr: Transaction len (rec/tot):     34/    34, tx:      26837, lsn: 0/9BC2B7B0, prev 0/9BC2B770, desc: COMMIT 2026-12-04 15:11:15.002458 UTC
rmgr: Heap2       len (rec/tot):     60/    60, tx:      26838, lsn: 0/9BC2B7D8, prev 0/9BC2B7B0, desc: PRUNE latestRemovedXid 26837 nredirected 1 ndead 1, blkref #0: rel 1663/35737/35738 blk 0
rmgr: Heap        len (rec/tot):     54/    54, tx:      26838, lsn: 0/9BC2B818, prev 0/9BC2B7D8, desc: DELETE off 5 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/35737/35738 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:      26838, lsn: 0/9BC2B850, prev 0/9BC2B818, desc: ABORT 2026-12-04 15:11:15.002835 UTC
rmgr: Heap        len (rec/tot):     54/    54, tx:      26839, lsn: 0/9BC2B878, prev 0/9BC2B850, desc: DELETE off 1 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/35737/35738 blk 0
rmgr: Heap        len (rec/tot):     54/    54, tx:      26840, lsn: 0/9BC2B8B0, prev 0/9BC2B878, desc: DELETE off 18 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/35737/35738 blk 1
rmgr: Transaction len (rec/tot):     46/    46, tx:      26839, lsn: 0/9BC2B8E8, prev 0/9BC2B8B0, desc: COMMIT 2026-12-04 15:11:15.003408 UTC; subxacts: 26840
rmgr: Heap        len (rec/tot):     54/    54, tx:      26841, lsn: 0/9BC2B918, prev 0/9BC2B8E8, desc: DELETE off 24 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/35737/35738 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:      26841, lsn: 0/9BC2B950, prev 0/9BC2B918, desc: COMMIT 2026-12-04 15:11:15.005962 UTC`;

// A ROLLBACK TO SAVEPOINT on another table (relfilenode 35757): the subtransaction 28389 ends with its own ABORT,
// its top transaction 28388 commits; and a same-block non-HOT update (an indexed column changed: one blkref).
const savepoint = `rmgr: Heap        len (rec/tot):     76/    76, tx:      28387, lsn: 0/9D01E7C0, prev 0/9D01E6A8, desc: UPDATE off 1 xmax 28387 flags 0x20 ; new off 6 xmax 0, blkref #0: rel 1663/35737/35757 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:      28387, lsn: 0/9D01E890, prev 0/9D01E850, desc: COMMIT 2026-12-04 15:11:38.902046 UTC
rmgr: Heap        len (rec/tot):     54/    54, tx:      28388, lsn: 0/9D01E8B8, prev 0/9D01E890, desc: DELETE off 2 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/35737/35757 blk 0
rmgr: Heap        len (rec/tot):     54/    54, tx:      28389, lsn: 0/9D01E8F0, prev 0/9D01E8B8, desc: DELETE off 3 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/35737/35757 blk 0
rmgr: Transaction len (rec/tot):     34/    34, tx:      28389, lsn: 0/9D01E928, prev 0/9D01E8F0, desc: ABORT 2026-12-04 15:11:38.902932 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:      28388, lsn: 0/9D01E950, prev 0/9D01E928, desc: COMMIT 2026-12-04 15:11:38.902973 UTC
rmgr: Heap2       len (rec/tot):     64/    64, tx:          0, lsn: 0/9D01EA40, prev 0/9D01EA18, desc: PRUNE latestRemovedXid 28390 nredirected 1 ndead 2, blkref #0: rel 1663/35737/35738 blk 0`;

function track(text: string, rel: string, rows: Array<[string, string]>) {
  const tracker = new DeletionTracker(
    rel,
    rows.map(([tenantId, ctid]) => ({ tenantId, at: parseCtid(ctid) })),
  );
  for (const line of text.split('\n')) {
    const event = parseWaldumpLine(line);
    if (event) tracker.feed(event);
  }
  return tracker.result();
}

describe('parseWaldumpLine', () => {
  const lines = sample.split('\n');
  it('a non-HOT update to another block: blkref #0 is the new block, #1 the old one', () => {
    expect(parseWaldumpLine(lines[2]!)).toEqual({
      kind: 'update',
      xid: 26836,
      lsn: '0/9BC2B218',
      rel: '1663/35737/35738',
      from: { block: 0, offset: 2 },
      to: { block: 1, offset: 18 },
    });
  });
  it('a HOT update stays on its block', () => {
    expect(parseWaldumpLine(lines[5]!)).toMatchObject({
      kind: 'update',
      from: { block: 0, offset: 3 },
      to: { block: 0, offset: 24 },
    });
  });
  it('a non-HOT update within one block has one blkref', () => {
    expect(parseWaldumpLine(savepoint.split('\n')[0]!)).toMatchObject({
      kind: 'update',
      rel: '1663/35737/35757',
      from: { block: 0, offset: 1 },
      to: { block: 0, offset: 6 },
    });
  });
  it('a delete, a commit with its subtransactions, an abort', () => {
    expect(parseWaldumpLine(lines[14]!)).toEqual({
      kind: 'delete',
      xid: 26840,
      lsn: '0/9BC2B8B0',
      rel: '1663/35737/35738',
      at: { block: 1, offset: 18 },
    });
    expect(parseWaldumpLine(lines[15]!)).toEqual({
      kind: 'commit',
      xid: 26839,
      lsn: '0/9BC2B8E8',
      time: '2026-12-04T15:11:15.003408Z',
      subxacts: [26840],
    });
    expect(parseWaldumpLine(lines[12]!)).toEqual({ kind: 'abort', xid: 26838, lsn: '0/9BC2B850', subxacts: [] });
  });
  it('other records are only a transaction writing; tx 0 and non-record lines are nothing', () => {
    expect(parseWaldumpLine(lines[1]!)).toEqual({ kind: 'record', xid: 26836, lsn: '0/9BC2B1E0' });
    expect(parseWaldumpLine(savepoint.split('\n')[6]!)).toBeUndefined();
    expect(
      parseWaldumpLine('pg_waldump: error: error in WAL record at 0/9D000000: invalid record length'),
    ).toBeUndefined();
    expect(
      parseWaldumpLine(
        'rmgr: Transaction len (rec/tot):    362/   362, tx:      28384, lsn: 0/9D01D620, prev 0/9D01D560, desc: COMMIT 2026-12-04 15:11:38.893449 UTC; inval msgs: catcache 80 catcache 79 snapshot 2608 relcache 35757',
      ),
    ).toMatchObject({ kind: 'commit', xid: 28384, subxacts: [] });
  });
});

describe('DeletionTracker', () => {
  const rel = '1663/35737/35738';
  it('follows moves (non-HOT to another block, HOT), credits a subtransaction’s delete to its top, ignores an aborted delete', () => {
    const r = track(sample, rel, [
      ['1', '(0,1)'],
      ['2', '(0,2)'],
      ['3', '(0,3)'],
      ['4', '(0,4)'],
      ['5', '(0,5)'],
      ['6', '(0,6)'],
    ]);
    const by = Object.fromEntries(r.deletions.map((d) => [d.tenantId, d.deletion]));
    expect(by['1']).toEqual({
      tenantId: '1',
      deletedBy: 26839,
      commitTime: '2026-12-04T15:11:15.003408Z',
      commitLsn: '0/9BC2B8E8',
      firstLsn: '0/9BC2B878',
    });
    // Moved to (1,18) by 26836, then deleted there by subtransaction 26840 of 26839: the first record is 26839's.
    expect(by['2']).toMatchObject({ deletedBy: 26839, commitLsn: '0/9BC2B8E8', firstLsn: '0/9BC2B878' });
    expect(by['3']).toEqual({
      tenantId: '3',
      deletedBy: 26841,
      commitTime: '2026-12-04T15:11:15.005962Z',
      commitLsn: '0/9BC2B950',
      firstLsn: '0/9BC2B918',
    });
    // Updated (its key changed: the row moved to (1,19)), never deleted; the aborted delete of 5 does not count.
    expect(by['4']).toBeUndefined();
    expect(by['5']).toBeUndefined();
    expect(by['6']).toBeUndefined();
    expect(r.lastLsn).toBe('0/9BC2B950');
  });
  it('a delete in a subtransaction rolled back to its savepoint does not count; its sibling in the top does', () => {
    const r = track(savepoint, '1663/35737/35757', [
      ['a', '(0,2)'],
      ['b', '(0,3)'],
      ['c', '(0,1)'],
    ]);
    const by = Object.fromEntries(r.deletions.map((d) => [d.tenantId, d.deletion]));
    expect(by.a).toMatchObject({ deletedBy: 28388, commitLsn: '0/9D01E950', firstLsn: '0/9D01E8B8' });
    expect(by.b).toBeUndefined();
    expect(by.c).toBeUndefined();
  });
  it('an update that aborts leaves the row at its old position', () => {
    const lines = [
      'rmgr: Heap        len (rec/tot):    368/   368, tx:        900, lsn: 0/10000028, prev 0/10000000, desc: HOT_UPDATE off 3 xmax 900 flags 0x20 ; new off 24 xmax 0, blkref #0: rel 1663/35737/35738 blk 0',
      'rmgr: Transaction len (rec/tot):     34/    34, tx:        900, lsn: 0/10000198, prev 0/10000028, desc: ABORT 2026-12-04 15:11:15.002835 UTC',
      'rmgr: Heap        len (rec/tot):     54/    54, tx:        901, lsn: 0/100001C0, prev 0/10000198, desc: DELETE off 3 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/35737/35738 blk 0',
      'rmgr: Transaction len (rec/tot):     34/    34, tx:        901, lsn: 0/100001F8, prev 0/100001C0, desc: COMMIT 2026-12-04 15:11:16 UTC',
    ].join('\n');
    const r = track(lines, rel, [['3', '(0,3)']]);
    expect(r.deletions[0]!.deletion).toMatchObject({ deletedBy: 901, commitTime: '2026-12-04T15:11:16.000Z' });
  });
  it('a delete of another relation at the same position is not the root row', () => {
    const r = track(sample.replaceAll('1663/35737/35738', '1663/35737/99999'), rel, [['1', '(0,1)']]);
    expect(r.deletions[0]!.deletion).toBeUndefined();
  });
});

describe('WAL segments and timelines', () => {
  it('names the segment of an LSN, and the next one across a log boundary', () => {
    expect(walSegmentOf('0/9BC2B8E8', 1, 16 << 20)).toBe('00000001000000000000009B');
    expect(walSegmentOf('1/0', 3, 16 << 20)).toBe('000000030000000100000000');
    expect(nextWalSegment('0000000100000000000000FF', 16 << 20)).toBe('000000010000000100000000');
    expect(nextWalSegment('00000001000000000000009B', 16 << 20)).toBe('00000001000000000000009C');
  });
  it('reads the switchpoint of a timeline history file', () => {
    expect(timelineSwitch('1\t0/9D01E950\tbefore transaction 28388 at 2026-12-04 15:11:38.902973+00\n')).toEqual({
      parent: 1,
      switchpoint: '0/9D01E950',
    });
  });
});
