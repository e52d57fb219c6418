/**
 * Failure unwrapping, in one place: an activity's or a child's failure arrives wrapped (ActivityFailure,
 * ChildWorkflowFailure) around the error that says what went wrong, whose type is the engine's error name.
 */
import { isCancellation } from '@temporalio/workflow';

interface FailureLike {
  cause?: unknown;
  type?: string;
  message?: string;
  name?: string;
}

const wrappers = new Set(['ActivityFailure', 'ChildWorkflowFailure']);

/** The innermost failure that is not a wrapper: the one whose type and message explain. */
function innermost(error: unknown): FailureLike {
  let e = error as FailureLike;
  while (e?.cause && e.name !== undefined && wrappers.has(e.name)) e = e.cause as FailureLike;
  return e;
}

/** The type (an engine error name such as CrossTenantConflictError) and message of a failure. */
export function failureMessage(error: unknown): { type?: string; message: string } {
  const e = innermost(error);
  return { type: e?.type ?? e?.name, message: e?.message ?? String(error) };
}

/** True when a child ended because it was cancelled, whether the cancellation arrives bare or wrapped. */
export function isCancelled(error: unknown): boolean {
  const cause = (error as FailureLike)?.cause as FailureLike | undefined;
  return isCancellation(error) || cause?.name === 'CancelledFailure';
}
