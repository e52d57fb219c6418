/**
 * The worker's side of the input contract (activities/input-contract/): each workflow parses its input as its first
 * step, so that an input from any client (not only the command line) is refused before any activity runs, with a
 * non-retryable InvalidInput failure that names every field that is wrong.
 */
import type { z } from 'zod';
import { checkInput, invalidInput } from '../activities/input-contract';

export function checkWorkflowInput<T>(workflow: string, schema: z.ZodType<T>, input: unknown): T {
  return checkInput(schema, input, (problems, fields) =>
    invalidInput(
      `${workflow} refused its input before doing anything: ${problems.join('; ')}. Start restores, discovers and drills with the tenant-restore command line, which checks the same contract and says which flag to fix.`,
      fields,
    ),
  );
}
