/**
 * The chaos scenario at `npm test` size (issue 7, parts 2, 4 and 5): a bulk restore through the CLI and a worker
 * process, as the least-privilege role, with a concurrent writer on the other tenants and two worker SIGKILLs, then
 * I1 (writer log), I2 (DELETE/TRUNCATE audit), I3 (checksums) and I5 (histories, logs, reports) are checked. It does
 * not restart the shared PostgreSQL or Temporal: that is the chaos run (`npm run test:chaos`).
 */
import { describe, expect, it } from 'vitest';
import { expectInvariants, runChaosScenario } from '../helpers/chaos';

describe('concurrent writer, audit and secrets around a restore with worker kills', () => {
  it('restores 24 tenants exactly; the other tenants, the audit and the recorded text stay clean', async () => {
    const outcome = await runChaosScenario({
      name: 'relwr',
      tenants: 40,
      victims: 24,
      rowsTarget: 5_000,
      kills: 2,
      restartPostgres: false,
      restartTemporal: false,
      concurrency: 4,
      groupSize: 4,
      chunkRows: 40,
      seed: 11,
    });
    const status = outcome.status.json as { result?: { status: string; restored: number; failed: number } };
    expect(outcome.faults.filter((f) => f.kind === 'kill-worker' && f.at >= 0)).toHaveLength(2);
    expect(status.result).toMatchObject({ status: 'succeeded', restored: 24, failed: 0 });
    expectInvariants(outcome);
    process.stderr.write(
      `[writers] restore ${Math.round(outcome.restoreMs / 1000)} s, writer ${outcome.checks.writerTransactions} transactions, ` +
        `${outcome.checks.untouched.rowsCompared} rows compared, ${outcome.checks.scanned.histories} histories scanned\n`,
    );
  });
});
