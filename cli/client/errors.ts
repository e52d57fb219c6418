/**
 * The CLI's own error classes and messages, in a module that imports nothing: `--help`, a typo and the failure model
 * load it without loading the Temporal client or the database driver.
 */

/** Bad input: the message says what is wrong and what to do. Exit code 2, and nothing has been written. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** No restore with that id in Temporal (never started, or removed by retention): bad input, exit code 2. */
export class RestoreNotFoundError extends UsageError {
  override name = 'RestoreNotFoundError';
}

/** A service (Temporal, S3) could not be reached: exit code 3. */
export class ServiceUnavailableError extends Error {
  override name = 'ServiceUnavailableError';
}

export function missingAwsCredentials(reason: string): string {
  return `no AWS credentials were found (${reason}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and AWS_ENDPOINT_URL_S3 for an S3-compatible store.`;
}
