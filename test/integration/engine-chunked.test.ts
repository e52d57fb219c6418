/**
 * Chunked copy of a tenant: each chunk is its own transaction; the keyset checkpoint reported after each chunk lets a
 * copy that was stopped half-way (cancelled through its AbortSignal, as a worker dying would) resume, and the result
 * is the same as a one-transaction copy. A chunk replayed from an older checkpoint is idempotent.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import { buildPlan, type Plan } from '../../activities/plan';
import { validateTenant } from '../../activities/validate';
import type { CopyCheckpoint } from '../../activities/restore-types';
import { destructiveStatements, installDeleteAudit } from '../helpers/audit';
import { fingerprints, psqlFile, query } from '../helpers/engine';
import { deleteTenantsSql, tenantFilter, tenantTables } from '../helpers/issue-tracker';
import { useFreshDatabases, useStackEnv } from '../helpers/stack';

useStackEnv();
const { fresh } = useFreshDatabases();

describe('chunked copy', () => {
  const pools = new Pools();
  let scratchUrl: string;
  let liveUrl: string;
  let plan: Plan;

  beforeAll(async () => {
    const source = await fresh('chunk_src');
    psqlFile(source.url, join(__dirname, '..', 'fixtures', 'issue-tracker.sql'));
    scratchUrl = (await fresh('chunk_scratch', source.name)).url;
    liveUrl = (await fresh('chunk_live', source.name)).url;
    await query(liveUrl, deleteTenantsSql([15]));
    await installDeleteAudit(liveUrl, 'all');
    plan = await buildPlan({ scratch: pools.get(scratchUrl), live: pools.get(liveUrl), tenantRoot: 'app.tenants' });
  });
  afterAll(() => pools.closeAll());

  it('stops after some chunks, resumes from the checkpoint, replays an old chunk, and ends equal to the backup', async () => {
    const checkpoints: CopyCheckpoint[] = [];
    const controller = new AbortController();
    const stopped = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['15'],
      conflict: 'fail',
      chunkRows: 25,
      signal: controller.signal,
      onCheckpoint: (c) => {
        checkpoints.push(c);
        if (checkpoints.length === 12) controller.abort(new Error('worker killed'));
      },
    }).then(
      () => null,
      (e: Error) => e,
    );
    expect(stopped?.message).toBe('worker killed');
    expect(checkpoints).toHaveLength(12);
    const last = checkpoints[checkpoints.length - 1]!;
    // Mid-table: the keyset cursor is there, and the chunks before it are committed.
    expect(last.tableIndex).toBeGreaterThan(0);
    const partial = await fingerprints(liveUrl, tenantTables, tenantFilter([15]));
    expect(partial['app.tenants']!.startsWith('1:')).toBe(true);

    // Resume from an older checkpoint than the last one: the replayed chunks find identical rows and write nothing.
    const resumed = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['15'],
      conflict: 'fail',
      chunkRows: 25,
      resumeFrom: checkpoints[9],
    });
    expect(resumed.chunked).toBe(true);
    expect(await fingerprints(liveUrl, tenantTables, tenantFilter([15]))).toEqual(
      await fingerprints(scratchUrl, tenantTables, tenantFilter([15])),
    );
    const v = await validateTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantId: '15',
      conflict: 'fail',
    });
    expect(v.ok).toBe(true);
    // Counts carried over from the checkpoint plus the resumed part cover the whole tenant exactly once.
    expect(resumed.rows['app.comments']).toBe(180);
    expect(resumed.rows['app.issue_labels']).toBe(120);
    expect(await destructiveStatements(liveUrl)).toEqual([]);
  });
});
