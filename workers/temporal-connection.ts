/**
 * Temporal connection settings from the environment, shared by the worker and the CLI:
 * TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE (default 'default'), and for Temporal Cloud or a
 * TLS cluster TEMPORAL_API_KEY, or TEMPORAL_TLS_CERT + TEMPORAL_TLS_KEY (file paths).
 */
import { readFileSync } from 'node:fs';

export interface TemporalConnectionOptions {
  address: string;
  tls?: { clientCertPair?: { crt: Buffer; key: Buffer } } | boolean;
  apiKey?: string;
}

/** A setting of the environment that cannot work (a missing file, a value out of its set): exit code 2. */
export class SettingError extends Error {
  override name = 'SettingError';
}

/** Temporal did not answer at the configured address: exit code 3, with the address and the variables to check. */
export class TemporalUnreachableError extends Error {
  override name = 'TemporalUnreachableError';
  constructor(reason: string, env: NodeJS.ProcessEnv = process.env) {
    super(
      `Temporal is not reachable at ${env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233'} (TEMPORAL_ADDRESS${env.TEMPORAL_ADDRESS ? '' : ' is unset: the default'}): ${reason}. ` +
        'Start it (for the dev stack: npm run stack -- up), or set TEMPORAL_ADDRESS, and TEMPORAL_NAMESPACE, TEMPORAL_API_KEY or TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY for a cluster or Temporal Cloud.',
    );
  }
}

/** How long a command waits for Temporal to accept a connection before it says so (the SDK's default is 10 s). */
export const temporalConnectTimeoutMs = 3_000;

function readSettingFile(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new SettingError(
      `${variable}=${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): set it to the path of the PEM file.`,
    );
  }
}

export function temporalConnectionOptions(env: NodeJS.ProcessEnv = process.env): TemporalConnectionOptions {
  const address = env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
  if (Boolean(env.TEMPORAL_TLS_CERT) !== Boolean(env.TEMPORAL_TLS_KEY))
    throw new SettingError(
      `${env.TEMPORAL_TLS_CERT ? 'TEMPORAL_TLS_CERT' : 'TEMPORAL_TLS_KEY'} is set without ${env.TEMPORAL_TLS_CERT ? 'TEMPORAL_TLS_KEY' : 'TEMPORAL_TLS_CERT'}: mutual TLS needs both (the client certificate and its key), or neither.`,
    );
  if (env.TEMPORAL_TLS_CERT && env.TEMPORAL_TLS_KEY) {
    return {
      address,
      tls: {
        clientCertPair: {
          crt: readSettingFile('TEMPORAL_TLS_CERT', env.TEMPORAL_TLS_CERT),
          key: readSettingFile('TEMPORAL_TLS_KEY', env.TEMPORAL_TLS_KEY),
        },
      },
    };
  }
  if (env.TEMPORAL_API_KEY) return { address, tls: true, apiKey: env.TEMPORAL_API_KEY };
  return { address };
}

export function temporalNamespace(env: NodeJS.ProcessEnv = process.env): string {
  return env.TEMPORAL_NAMESPACE ?? 'default';
}
