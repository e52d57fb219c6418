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

export function temporalConnectionOptions(env: NodeJS.ProcessEnv = process.env): TemporalConnectionOptions {
  const address = env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';
  if (env.TEMPORAL_TLS_CERT && env.TEMPORAL_TLS_KEY) {
    return {
      address,
      tls: { clientCertPair: { crt: readFileSync(env.TEMPORAL_TLS_CERT), key: readFileSync(env.TEMPORAL_TLS_KEY) } },
    };
  }
  if (env.TEMPORAL_API_KEY) return { address, tls: true, apiKey: env.TEMPORAL_API_KEY };
  return { address };
}

export function temporalNamespace(env: NodeJS.ProcessEnv = process.env): string {
  return env.TEMPORAL_NAMESPACE ?? 'default';
}
