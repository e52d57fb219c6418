/**
 * Determinism guard: today's workflow code replays the histories saved from real runs of the orchestration tests
 * (test/replay/histories/*.binpb, binary protobuf, written by the orchestration tests with SAVE_REPLAY_HISTORIES=1). A change to bulkRestore or restoreUnit that would
 * break a restore in flight fails here; guard such a change with patched() and keep the old histories. The previous
 * release (0.1.0, never deployed) and the histories of its child types are retired.
 */
import { Worker } from '@temporalio/worker';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { readSavedHistory, replayHistoriesDir as dir } from '../helpers/history';

const files = readdirSync(dir)
  .filter((f) => f.endsWith('.binpb'))
  .sort();

describe('workflow replay against saved histories', () => {
  it('has histories of the parent (first run, continued run, approval, units) and of restore units (of one, of several)', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'bulk-restore-units.binpb',
        'bulk-restore-units-approval.binpb',
        'bulk-restore-units-continued-run.binpb',
        'bulk-restore-units-group-approval.binpb',
        'restore-unit-actions.binpb',
        'restore-unit-approval.binpb',
        'restore-unit-group-approval.binpb',
      ]),
    );
  });

  it('replays every saved history without a nondeterminism error', async () => {
    const histories = files.map((file) => ({
      workflowId: file.replace(/\.binpb$/, ''),
      history: readSavedHistory(join(dir, file)),
    }));
    const results = Worker.runReplayHistories(
      { workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') } },
      histories,
    );
    const replayed: string[] = [];
    for await (const result of results) {
      expect(result.error, `${result.workflowId}: ${String(result.error)}`).toBeUndefined();
      replayed.push(result.workflowId);
    }
    expect(replayed.sort()).toEqual(files.map((f) => f.replace(/\.binpb$/, '')).sort());
  });
});
