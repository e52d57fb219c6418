/**
 * One error model for every command: whatever a command throws becomes, here and only here, one of the documented
 * exit codes and a message that says what to do.
 * - 2, bad input or usage: a flag, a file, a setting of the environment, a config the worker would refuse;
 * - 3, a service could not be reached: Temporal (with the address tried and the variables to set), S3, a database;
 * - 1, anything else: the command ran and failed.
 */
import { SettingError, TemporalUnreachableError } from '../../workers/temporal-connection';
import { missingAwsCredentials, ServiceUnavailableError, UsageError } from './errors';

export interface Failure {
  code: 1 | 2 | 3;
  message: string;
}

/** Errors of the engine that mean the input (config, plan, tenant list) is wrong, whoever raised them. */
const badInput = new Set(['InvalidConfigError', 'DatabaseRefError']);

const networkCodes = new Set(['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET', 'EAI_AGAIN']);

/** gRPC status codes the Temporal client reports. */
const grpc = { invalidArgument: 3, deadlineExceeded: 4, unavailable: 14 };

export function describeFailure(error: unknown): Failure {
  const e = (error ?? {}) as Error & { code?: string | number; name?: string; message?: string };
  const message = e.message ?? String(error);
  if (error instanceof UsageError || error instanceof SettingError || badInput.has(e.name ?? ''))
    return { code: 2, message };
  if (error instanceof ServiceUnavailableError || error instanceof TemporalUnreachableError)
    return { code: 3, message };
  if (e.name === 'CredentialsProviderError') return { code: 2, message: missingAwsCredentials(message) };
  // The worker's native connection (Rust core) reports an unreachable server as a transport error.
  if (/tonic::transport|transport error|Failed to connect before the deadline/i.test(message))
    return { code: 3, message: new TemporalUnreachableError(message).message };
  if (e.code === grpc.unavailable || e.code === grpc.deadlineExceeded)
    return { code: 3, message: new TemporalUnreachableError(message).message };
  if (e.code === grpc.invalidArgument) return { code: 2, message: `Temporal refused the request: ${message}` };
  if (networkCodes.has(String(e.code))) return { code: 3, message: `cannot reach a service: ${message}` };
  return { code: 1, message };
}
