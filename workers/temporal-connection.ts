/**
 * Temporal connection settings, shared by the worker and the CLI, read the way the Temporal CLI and SDKs read them
 * (@temporalio/envconfig): a profile of the TOML file (TEMPORAL_CONFIG_FILE, else ~/.config/temporalio/temporal.toml;
 * TEMPORAL_PROFILE, else `default`), overridden by the variables TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 * TEMPORAL_API_KEY, TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH / _KEY_PATH, TEMPORAL_TLS_SERVER_CA_CERT_PATH,
 * TEMPORAL_TLS_SERVER_NAME, TEMPORAL_GRPC_META_*. Defaults: 127.0.0.1:7233, namespace `default`.
 * TEMPORAL_TLS_CERT / TEMPORAL_TLS_KEY, this product's names before, still work as the client pair.
 */
import type { ClientConfigProfile, ConfigDataSource } from '@temporalio/envconfig';
import { readFileSync } from 'node:fs';

export interface TemporalConnectionOptions {
  address: string;
  tls?:
    | {
        clientCertPair?: { crt: Buffer; key: Buffer };
        serverRootCACertificate?: Buffer;
        serverNameOverride?: string;
      }
    | boolean;
  apiKey?: string;
  metadata?: Record<string, string>;
}

export interface TemporalSettings {
  connection: TemporalConnectionOptions;
  namespace: string;
  /** Where the address came from, for messages: `TEMPORAL_ADDRESS`, a profile of a file, or the default. */
  addressSource: string;
}

/** A setting of the environment that cannot work (a missing file, a value out of its set): exit code 2. */
export class SettingError extends Error {
  override name = 'SettingError';
}

const defaultAddress = '127.0.0.1:7233';

/** Temporal did not answer at the configured address: exit code 3, with the address and where it came from. */
export class TemporalUnreachableError extends Error {
  override name = 'TemporalUnreachableError';
  constructor(reason: string, env: NodeJS.ProcessEnv = process.env) {
    let where: { address: string; source: string };
    try {
      const settings = temporalSettings(env);
      where = { address: settings.connection.address, source: settings.addressSource };
    } catch {
      where = { address: env.TEMPORAL_ADDRESS ?? defaultAddress, source: 'TEMPORAL_ADDRESS' };
    }
    super(
      `Temporal is not reachable at ${where.address} (${where.source}): ${reason}. ` +
        'Start it (for the dev stack: npm run stack -- up), or set TEMPORAL_ADDRESS, and TEMPORAL_NAMESPACE, TEMPORAL_API_KEY or ' +
        'TEMPORAL_TLS_CLIENT_CERT_PATH/TEMPORAL_TLS_CLIENT_KEY_PATH for a cluster or Temporal Cloud (or a profile: TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE).',
    );
  }
}

/** How long a command waits for Temporal to accept a connection before it says so (the SDK's default is 10 s). */
export const temporalConnectTimeoutMs = 3_000;

/** The file envconfig reads when TEMPORAL_CONFIG_FILE is unset (as the Temporal CLI does). */
function defaultConfigFile(env: NodeJS.ProcessEnv): string {
  const home = env.HOME ?? '';
  if (process.platform === 'darwin') return `${home}/Library/Application Support/temporalio/temporal.toml`;
  return `${env.XDG_CONFIG_HOME ?? `${home}/.config`}/temporalio/temporal.toml`;
}

/**
 * The profile, from the file and the variables. Errors name the variable or the file to fix: a profile that is not in
 * the file, a file that does not parse, a TLS file that cannot be read, half of a client pair.
 */
export function temporalSettings(env: NodeJS.ProcessEnv = process.env): TemporalSettings {
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined) vars[k] = v;
  // This product's earlier names for the client pair, unless the Temporal CLI's are set.
  vars.TEMPORAL_TLS_CLIENT_CERT_PATH ??= env.TEMPORAL_TLS_CERT ?? '';
  vars.TEMPORAL_TLS_CLIENT_KEY_PATH ??= env.TEMPORAL_TLS_KEY ?? '';
  for (const k of ['TEMPORAL_TLS_CLIENT_CERT_PATH', 'TEMPORAL_TLS_CLIENT_KEY_PATH']) if (!vars[k]) delete vars[k];
  const certVar = env.TEMPORAL_TLS_CLIENT_CERT_PATH ? 'TEMPORAL_TLS_CLIENT_CERT_PATH' : 'TEMPORAL_TLS_CERT';
  const keyVar = env.TEMPORAL_TLS_CLIENT_KEY_PATH ? 'TEMPORAL_TLS_CLIENT_KEY_PATH' : 'TEMPORAL_TLS_KEY';
  const file = env.TEMPORAL_CONFIG_FILE || defaultConfigFile(env);
  const profileName = env.TEMPORAL_PROFILE || 'default';

  let profile: ClientConfigProfile;
  try {
    // Loaded here, not at the top: the failure model imports this module, and `--help` must not load the SDK.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { loadClientConfigProfile } = require('@temporalio/envconfig') as typeof import('@temporalio/envconfig');
    profile = loadClientConfigProfile({ overrideEnvVars: vars });
  } catch (error) {
    throw new SettingError(
      `the Temporal profile '${profileName}' of ${file} cannot be loaded (${(error as Error).message}): fix the file, or set TEMPORAL_CONFIG_FILE and TEMPORAL_PROFILE, or unset them and set TEMPORAL_ADDRESS.`,
    );
  }

  const tls = profile.tls;
  if (tls && !tls.disabled && Boolean(tls.clientCert) !== Boolean(tls.clientKey)) {
    const [set, unset] = tls.clientCert ? [certVar, keyVar] : [keyVar, certVar];
    throw new SettingError(
      `${set} is set without ${unset}: mutual TLS needs both (the client certificate and its key), or neither.`,
    );
  }
  const read = (source: ConfigDataSource | undefined, variable: string): Buffer | undefined => {
    if (!source) return undefined;
    if ('data' in source) return Buffer.from(source.data);
    try {
      return readFileSync(source.path);
    } catch (error) {
      throw new SettingError(
        `${variable}=${source.path} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): set it to the path of the PEM file.`,
      );
    }
  };
  const crt = read(tls?.clientCert, certVar);
  const key = read(tls?.clientKey, keyVar);
  const ca = read(tls?.serverCACert, 'TEMPORAL_TLS_SERVER_CA_CERT_PATH');
  const tlsOption: TemporalConnectionOptions['tls'] =
    tls === undefined
      ? profile.apiKey
        ? true
        : undefined
      : tls.disabled
        ? false
        : {
            ...(crt && key ? { clientCertPair: { crt, key } } : {}),
            ...(ca ? { serverRootCACertificate: ca } : {}),
            ...(tls.serverName ? { serverNameOverride: tls.serverName } : {}),
          };

  const fromFile = !env.TEMPORAL_ADDRESS && profile.address;
  return {
    connection: {
      address: profile.address ?? defaultAddress,
      ...(tlsOption !== undefined ? { tls: tlsOption } : {}),
      ...(profile.apiKey ? { apiKey: profile.apiKey } : {}),
      ...(profile.grpcMeta && Object.keys(profile.grpcMeta).length ? { metadata: profile.grpcMeta } : {}),
    },
    namespace: profile.namespace ?? 'default',
    addressSource: env.TEMPORAL_ADDRESS
      ? 'TEMPORAL_ADDRESS'
      : fromFile
        ? `profile '${profileName}' of ${file}`
        : 'TEMPORAL_ADDRESS is unset: the default',
  };
}

export function temporalConnectionOptions(env: NodeJS.ProcessEnv = process.env): TemporalConnectionOptions {
  return temporalSettings(env).connection;
}

export function temporalNamespace(env: NodeJS.ProcessEnv = process.env): string {
  return temporalSettings(env).namespace;
}
