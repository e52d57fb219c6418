/**
 * Determinism guard: today's workflow code replays the histories saved from real runs of the orchestration tests
 * (test/replay/histories, written with SAVE_REPLAY_HISTORIES=1). A change to bulkRestore or tenantRestore that would
 * break a restore in flight fails here; guard such a change with patched() and keep the old histories.
 */
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';

const dir = join(__dirname, 'histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

describe('workflow replay against saved histories', () => {
  it('has histories of the parent (first run, continued run, approval) and of children', () => {
    expect(files).toEqual(expect.arrayContaining([
      'bulk-restore-50.json', 'bulk-restore-approval.json', 'bulk-restore-continued-run.json', 'tenant-restore-actions.json', 'tenant-restore-approval.json',
    ]));
  });

  it('replays every saved history without a nondeterminism error', async () => {
    const histories = files.map((file) => ({ workflowId: file.replace(/\.json$/, ''), history: historyFromJSON(JSON.parse(readFileSync(join(dir, file), 'utf8'))) }));
    const results = Worker.runReplayHistories({ workflowBundle: { code: readFileSync(inject('workflowBundlePath'), 'utf8') } }, histories);
    const replayed: string[] = [];
    for await (const result of results) {
      expect(result.error, `${result.workflowId}: ${String(result.error)}`).toBeUndefined();
      replayed.push(result.workflowId);
    }
    expect(replayed.sort()).toEqual(files.map((f) => f.replace(/\.json$/, '')));
  });
});
