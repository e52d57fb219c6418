import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { checkDatabase } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 3 },
});

/**
 * stackCheck: the smallest end-to-end proof that a worker, the dev server and a database talk to each other.
 * Invariant: it only reads (`SELECT current_database()`), and its input is a password-less reference.
 */
export async function stackCheck(database: string): Promise<{ database: string; serverVersion: string }> {
  return checkDatabase(database);
}
