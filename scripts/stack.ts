/**
 * The local dev stack: a real Temporal dev server, a real PostgreSQL cluster and a real MinIO, each started in the
 * background with its state under `.stack/`. `up` is idempotent; `down` stops exactly the processes whose pid files
 * it wrote, never anything found by name.
 *
 * PostgreSQL archives its WAL with pgBackRest (stanza `tenant-restore`) into a second MinIO, `minio-wal`, that serves
 * TLS with a self-signed certificate made at the first `up`: pgBackRest's S3 client speaks only https, and the main
 * MinIO stays on http so that no S3 client of the product has to trust that certificate.
 *
 *   npm run stack -- up | down | status [--json]
 */
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { Agent } from 'node:https';
import { createConnection } from 'node:net';
import { join, relative, resolve } from 'node:path';
import { CreateBucketCommand, HeadBucketCommand, PutBucketVersioningCommand, S3Client } from '@aws-sdk/client-s3';
// Not a direct dependency: it comes with @aws-sdk/client-s3, whose default request handler it is.
import { NodeHttpHandler } from '@smithy/node-http-handler';

// See activities/s3.ts: the SDK's Node-version warning is noise here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export const projectRoot = resolve(__dirname, '..');
export const stackDir = join(projectRoot, '.stack');
/** Go binaries built by `go install` are cached here (git-ignored), so only the first run pays for the build. */
export const toolsBin = join(projectRoot, '.tools', 'bin');

/** Pinned versions. v1.5.1 is the newest temporal CLI tag whose go.mod has no `replace` directive. */
const TEMPORAL_MODULE = 'github.com/temporalio/cli/cmd/temporal@v1.5.1';
const MINIO_MODULE = 'github.com/minio/minio@latest';

/** Ports away from the defaults of services a developer machine may already run (5432, 9000). */
export const ports = {
  postgres: Number(process.env.STACK_PG_PORT ?? 54329),
  /** The scratch server: a second cluster, where backups are loaded by an unprivileged role (never on live's server). */
  pgScratch: Number(process.env.STACK_PG_SCRATCH_PORT ?? 54330),
  temporal: Number(process.env.STACK_TEMPORAL_PORT ?? 7233),
  temporalUi: Number(process.env.STACK_TEMPORAL_UI_PORT ?? 8233),
  minio: Number(process.env.STACK_MINIO_PORT ?? 9010),
  minioConsole: Number(process.env.STACK_MINIO_CONSOLE_PORT ?? 9011),
  /** The second MinIO, TLS only, that holds pgBackRest's WAL archive and backups. */
  minioWal: Number(process.env.STACK_MINIO_WAL_PORT ?? 9012),
  minioWalConsole: Number(process.env.STACK_MINIO_WAL_CONSOLE_PORT ?? 9013),
};

/** pgBackRest: its stanza, its bucket in minio-wal, its config (it holds the S3 secret), the TLS certificate. */
export const pgbackrestStanza = 'tenant-restore';
const walBucket = 'tenant-restore-wal';
const tlsDir = join(stackDir, 'tls');
const tlsCert = join(tlsDir, 'public.crt');
const tlsKey = join(tlsDir, 'private.key');
const pgbackrestDir = join(stackDir, 'pgbackrest');
export const pgbackrestConfig = join(pgbackrestDir, 'pgbackrest.conf');
const pgbackrestInstall = 'apt-get update && apt-get install -y pgbackrest';

/** Custom search attributes the workflows set, registered when the dev server starts (DESIGN.md, Temporal shape). */
export const searchAttributes: Record<string, 'Keyword' | 'Int'> = {
  RestoreId: 'Keyword',
  RestorePhase: 'Keyword',
  RestoreKind: 'Keyword',
  TenantId: 'Keyword',
  TenantsTotal: 'Int',
  TenantsRestored: 'Int',
  TenantsFailed: 'Int',
};

export interface StackEnv {
  TEMPORAL_ADDRESS: string;
  TEMPORAL_NAMESPACE: string;
  TEMPORAL_UI_URL: string;
  STACK_PG_URL: string;
  AWS_ENDPOINT_URL_S3: string;
  AWS_ACCESS_KEY_ID: string;
  AWS_SECRET_ACCESS_KEY: string;
  AWS_REGION: string;
  STACK_S3_BUCKET: string;
  /** Passwords live here (libpq format), never in URLs: node-postgres, pg_dump and pg_restore all read it. */
  PGPASSFILE: string;
  /** pgBackRest's config file; pgbackrest itself reads this variable (or use `pgbackrest()` below). */
  PGBACKREST_CONFIG: string;
  STACK_PGBACKREST_STANZA: string;
  /** The self-signed certificate minio-wal serves (https://127.0.0.1:9012), to trust when talking to it. */
  STACK_PGBACKREST_CA: string;
  /** The scratch cluster's superuser (with its password): for tests that look at what a restore left there. */
  STACK_PG_SCRATCH_URL: string;
  /**
   * The scratch server as the product sees it: an alias (activities/db.ts) for `tenant_restore_scratch`, a role with
   * CREATEDB and nothing else, on the scratch cluster (its password is in PGPASSFILE).
   */
  TENANT_RESTORE_DB_SCRATCH: string;
  /** The command line's default --scratch-server: the alias above. */
  TENANT_RESTORE_SCRATCH_SERVER: string;
  /** The public key workers check backup manifests with (activities/backup-trust.ts): a PEM file. */
  TENANT_RESTORE_BACKUP_PUBLIC_KEY: string;
  /** The private key the stack's backup job signs manifests with (scripts/workload/backup.ts): a PEM file. */
  STACK_BACKUP_SIGNING_KEY: string;
}

/** The scratch cluster's unprivileged role: CREATEDB, nothing else, and nothing of live (it is another cluster). */
export const scratchRole = 'tenant_restore_scratch';
const backupKeyDir = join(stackDir, 'backup-signing');

type Say = (message: string) => void;
const defaultSay: Say = (m) => process.stderr.write(`[stack] ${m}\n`);

// ---------------------------------------------------------------------------------------------------------------
// helpers

function pidFile(name: string): string {
  return join(stackDir, `${name}.pid`);
}

function readPid(name: string): number | undefined {
  const file = pidFile(name);
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, 'utf8').trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 500): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const socket = createConnection({ port, host });
    const done = (open: boolean) => {
      socket.destroy();
      resolvePromise(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  timeoutMs: number,
  logFile?: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  const tail =
    logFile && existsSync(logFile)
      ? `\nLast lines of ${logFile}:\n${readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n')}`
      : '';
  throw new Error(`${what} did not become ready within ${Math.round(timeoutMs / 1000)} s.${tail}`);
}

function which(binary: string): string | undefined {
  const result = spawnSync('sh', ['-c', `command -v ${binary}`], { encoding: 'utf8' });
  const found = result.stdout.trim();
  return result.status === 0 && found ? found : undefined;
}

function findGo(): string | undefined {
  return which('go') ?? (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
}

/**
 * Finds a Go-built server binary on PATH or in the project's tool cache, or builds it with `go install`.
 * The build prints a heartbeat every 15 s because a first build of temporal or minio takes minutes.
 */
export async function ensureGoBinary(name: string, modules: string[], say: Say = defaultSay): Promise<string> {
  const cached = join(toolsBin, name);
  if (existsSync(cached)) return cached;
  const onPath = which(name);
  if (onPath) return onPath;
  const go = findGo();
  if (!go) {
    throw new Error(
      `'${name}' is not on PATH and Go is not installed to build it.\n` +
        `Install Go (https://go.dev/dl, then put /usr/local/go/bin on PATH) or put a '${name}' binary on PATH.\n` +
        `It would be built with: go install ${modules[0]}`,
    );
  }
  mkdirSync(toolsBin, { recursive: true });
  const failures: string[] = [];
  for (const module of modules) {
    say(`building ${name} with 'go install ${module}' into .tools/bin (first run only; this takes a few minutes)`);
    const started = Date.now();
    const logFile = join(projectRoot, '.tools', `${name}-build.log`);
    const log = openSync(logFile, 'w');
    const child = spawn(go, ['install', module], {
      env: { ...process.env, GOBIN: toolsBin, GOFLAGS: '-mod=mod' },
      cwd: join(projectRoot, '.tools'),
      stdio: ['ignore', log, log],
    });
    const timer = setInterval(() => {
      const lines = readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean);
      const fetched = lines.filter((l) => l.startsWith('go: downloading')).length;
      say(
        `  ... still building ${name}: ${Math.round((Date.now() - started) / 1000)} s elapsed, ${fetched} modules downloaded, now compiling`,
      );
    }, 15_000);
    const code: number = await new Promise((r) => child.on('exit', (c) => r(c ?? 1)));
    clearInterval(timer);
    closeSync(log);
    if (code === 0 && existsSync(cached)) {
      say(`built ${name} in ${Math.round((Date.now() - started) / 1000)} s`);
      return cached;
    }
    failures.push(`go install ${module} failed (exit ${code}); see ${logFile}`);
  }
  throw new Error(`Could not build '${name}':\n  ${failures.join('\n  ')}\nPut a '${name}' binary on PATH instead.`);
}

function findPostgresBin(): string {
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    if (versions.length > 0) return join(base, versions[0], 'bin');
  }
  const initdb = which('initdb');
  if (initdb) return resolve(initdb, '..');
  throw new Error(
    'No PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and on PATH).\n' +
      'Install them with: apt-get install postgresql-15 postgresql-client-15',
  );
}

/** PostgreSQL refuses to run as root, so as root the cluster belongs to the unprivileged 'postgres' user. */
function postgresRunAs(): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = spawnSync('id', ['-u', 'postgres']);
  if (id.status !== 0)
    throw new Error("Running as root, PostgreSQL needs an unprivileged user: create one with 'useradd -r postgres'.");
  return 'postgres';
}

function runPg(bin: string, args: string[], runAs: string | undefined): { status: number | null; output: string } {
  const command = runAs ? 'runuser' : bin;
  const fullArgs = runAs ? ['-u', runAs, '--', bin, ...args] : args;
  const result = spawnSync(command, fullArgs, { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout ?? ''}${result.stderr ?? ''}` };
}

/** pgBackRest from the machine's package (Debian's `pgbackrest`; `npm test` and `npm run demo` install it as root). */
function findPgbackrest(): string {
  const found = which('pgbackrest');
  if (!found)
    throw new Error(
      "pgBackRest is not installed: the stack archives PostgreSQL's WAL with it.\n" +
        `Install it with: ${process.getuid?.() === 0 ? '' : 'sudo '}sh -c '${pgbackrestInstall}'`,
    );
  return found;
}

/**
 * Runs pgbackrest with the stack's config (as the 'postgres' user when root, like PostgreSQL: its log and lock files
 * belong to that user). `output` is stdout then stderr; `stdout` alone is what `--output=json` prints.
 * Example: `pgbackrest(['--stanza=tenant-restore', 'backup', '--type=full'])`.
 */
/** The database's clock to the microsecond, in UTC ISO 8601: the moment of an incident as PostgreSQL records it. */
export const clockMicrosSql = `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS t`;

/**
 * Makes the newest commit reach the WAL archive: a switch to a new segment, then a wait until the archiver has pushed
 * it. `run` runs one query on the archived cluster and returns its rows (each caller has its own client).
 */
export async function archiveWalNow(
  run: (sql: string) => Promise<Array<Record<string, unknown>>>,
  timeoutMs = 120_000,
): Promise<void> {
  const [{ wal }] = (await run('SELECT pg_walfile_name(pg_switch_wal()) AS wal')) as Array<{ wal: string }>;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [s] = (await run(
      'SELECT last_archived_wal AS last, last_failed_wal AS failed FROM pg_stat_archiver',
    )) as Array<{
      last: string | null;
      failed: string | null;
    }>;
    if (s.last && s.last >= wal) return;
    if (Date.now() > deadline)
      throw new Error(
        `WAL ${wal} was not archived within ${timeoutMs / 1000} s (last failed: ${s.failed ?? 'none'}): see .stack/pg/postgres.log`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

export function pgbackrest(args: string[]): { status: number | null; output: string; stdout: string } {
  const bin = findPgbackrest();
  const runAs = postgresRunAs();
  const fullArgs = [`--config=${pgbackrestConfig}`, ...args];
  const result = spawnSync(runAs ? 'runuser' : bin, runAs ? ['-u', runAs, '--', bin, ...fullArgs] : fullArgs, {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const stdout = result.stdout ?? '';
  return { status: result.status, output: `${stdout}${result.stderr ?? ''}`, stdout };
}

function secret(name: string): string {
  const file = join(stackDir, `${name}.secret`);
  if (!existsSync(file)) writeFileSync(file, randomBytes(18).toString('base64url'), { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}

function startDetached(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = process.env): number {
  const logFile = join(stackDir, `${name}.log`);
  const log = openSync(logFile, 'a');
  const child = spawn(command, args, { detached: true, stdio: ['ignore', log, log], env, cwd: stackDir });
  child.unref();
  closeSync(log);
  if (!child.pid) throw new Error(`could not start ${name}`);
  writeFileSync(pidFile(name), String(child.pid));
  return child.pid;
}

// ---------------------------------------------------------------------------------------------------------------
// the three services

export function stackEnv(): StackEnv {
  const pgPassword = secret('postgres');
  const minioSecret = secret('minio');
  return {
    TEMPORAL_ADDRESS: `127.0.0.1:${ports.temporal}`,
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_UI_URL: `http://127.0.0.1:${ports.temporalUi}`,
    STACK_PG_URL: `postgres://postgres:${encodeURIComponent(pgPassword)}@127.0.0.1:${ports.postgres}/postgres`,
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${ports.minio}`,
    AWS_ACCESS_KEY_ID: 'tenantrestore',
    AWS_SECRET_ACCESS_KEY: minioSecret,
    AWS_REGION: 'us-east-1',
    STACK_S3_BUCKET: 'tenant-restore',
    PGPASSFILE: join(stackDir, 'pgpass'),
    PGBACKREST_CONFIG: pgbackrestConfig,
    STACK_PGBACKREST_STANZA: pgbackrestStanza,
    STACK_PGBACKREST_CA: tlsCert,
    STACK_PG_SCRATCH_URL: `postgres://postgres:${encodeURIComponent(secret('postgres-scratch'))}@127.0.0.1:${ports.pgScratch}/postgres`,
    TENANT_RESTORE_DB_SCRATCH: `postgres://${scratchRole}@127.0.0.1:${ports.pgScratch}/postgres`,
    TENANT_RESTORE_SCRATCH_SERVER: 'scratch',
    TENANT_RESTORE_BACKUP_PUBLIC_KEY: join(backupKeyDir, 'public.pem'),
    STACK_BACKUP_SIGNING_KEY: join(backupKeyDir, 'private.pem'),
  };
}

/**
 * The stack's backup signing key pair (Ed25519), made once: the backup job (scripts/workload/backup.ts) signs each
 * manifest with the private key; workers hold only the public key (TENANT_RESTORE_BACKUP_PUBLIC_KEY).
 */
function ensureBackupSigningKey(say: Say): void {
  const privateFile = join(backupKeyDir, 'private.pem');
  const publicFile = join(backupKeyDir, 'public.pem');
  if (existsSync(privateFile) && existsSync(publicFile)) return;
  mkdirSync(backupKeyDir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  writeFileSync(privateFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(publicFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 });
  say('made the backup signing key pair (Ed25519) in .stack/backup-signing');
}

/** The archive_command of the stack's PostgreSQL: pgBackRest pushes each finished WAL segment to minio-wal. */
function archiveCommand(): string {
  const quote = (word: string) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`);
  return `${quote(findPgbackrest())} ${quote(`--config=${pgbackrestConfig}`)} --stanza=${pgbackrestStanza} archive-push %p`;
}

/**
 * WAL archiving is set in the cluster's own configuration, not on pg_ctl's command line: `archive.conf` in the data
 * directory (rewritten only when it changes), included once from postgresql.conf. A cluster made before archiving
 * was part of the stack gets the include at its next `up`.
 */
function writeArchiveSettings(dataDir: string, runAs: string | undefined): void {
  const settings = join(dataDir, 'archive.conf');
  const content =
    "# Written by scripts/stack.ts at each 'up': WAL archiving with pgBackRest into the stack's minio-wal.\n" +
    'wal_level = replica\n' +
    'archive_mode = on\n' +
    `archive_command = '${archiveCommand().replace(/'/g, "''")}'\n` +
    'archive_timeout = 60\n';
  let changed = false;
  if (!existsSync(settings) || readFileSync(settings, 'utf8') !== content) {
    writeFileSync(settings, content, { mode: 0o600 });
    changed = true;
  }
  const main = join(dataDir, 'postgresql.conf');
  const include = "include_if_exists = 'archive.conf'";
  if (!readFileSync(main, 'utf8').includes(include)) {
    writeFileSync(
      main,
      `${readFileSync(main, 'utf8')}\n# Added by scripts/stack.ts: WAL archiving with pgBackRest.\n${include}\n`,
    );
    changed = true;
  }
  if (runAs && changed) spawnSync('chown', [runAs, settings, main]);
}

/** One setting of the running stack PostgreSQL, read over its Unix socket (local connections are trusted). */
function showSetting(bin: string, name: string, runAs: string | undefined): string {
  const socketDir = join(stackDir, 'pg');
  const result = runPg(
    join(bin, 'psql'),
    [
      '-X',
      '-At',
      '-h',
      socketDir,
      '-p',
      String(ports.postgres),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-c',
      `SHOW ${name}`,
    ],
    runAs,
  );
  if (result.status !== 0) throw new Error(`could not read ${name} from the running postgres:\n${result.output}`);
  return result.output.trim();
}

async function upPostgres(say: Say): Promise<void> {
  const dataDir = join(stackDir, 'pg', 'data');
  const socketDir = join(stackDir, 'pg');
  const bin = findPostgresBin();
  const runAs = postgresRunAs();
  if (await portOpen(ports.postgres)) {
    if (!(alive(readPid('postgres')) || existsSync(join(dataDir, 'postmaster.pid'))))
      throw new Error(
        `Port ${ports.postgres} is taken by a process that is not this stack's PostgreSQL. Stop it or set STACK_PG_PORT.`,
      );
    // A cluster started before WAL archiving was part of the stack (or with another archive_command) gets it now.
    writeArchiveSettings(dataDir, runAs);
    const archiveMode = showSetting(bin, 'archive_mode', runAs);
    if (archiveMode === 'on') {
      if (showSetting(bin, 'archive_command', runAs) !== archiveCommand()) {
        say('postgres: archive_command changed, reloading its configuration');
        const reloaded = runPg(join(bin, 'pg_ctl'), ['-D', dataDir, 'reload'], runAs);
        if (reloaded.status !== 0) throw new Error(`pg_ctl reload failed:\n${reloaded.output}`);
      }
      return say(`postgres already up on :${ports.postgres}`);
    }
    say(`postgres is up without WAL archiving (archive_mode ${archiveMode}): restarting it to turn it on`);
    const stopped = runPg(join(bin, 'pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', 'stop'], runAs);
    if (stopped.status !== 0) throw new Error(`pg_ctl stop failed:\n${stopped.output}`);
  }
  initCluster('postgres', socketDir, 'postgres', say);
  writeArchiveSettings(dataDir, runAs);
  startCluster('postgres', socketDir, ports.postgres, ['max_connections=300', 'shared_buffers=256MB'], say);
  await waitFor('postgres', () => portOpen(ports.postgres), 30_000, join(socketDir, 'postgres.log'));
}

/**
 * The scratch server: a second PostgreSQL cluster in .stack/pg-scratch on its own port, no WAL archiving. Backups are
 * loaded there by `tenant_restore_scratch` (LOGIN CREATEDB, no other privilege; password in PGPASSFILE): a backup is
 * code for the role that loads it, so it never runs on live's server nor as live's role (activities/scratch-server.ts).
 * Idempotent: a running cluster is left as it is, the role is (re)made with CREATEDB only.
 */
/**
 * initdb of one of the stack's clusters in `<dir>/data`, once: superuser `postgres` with the stack's secret
 * `secretName`, trust on the Unix socket, scram over TCP, UTF8 with the C.UTF-8 locale.
 */
function initCluster(name: string, dir: string, secretName: string, say: Say): void {
  const dataDir = join(dir, 'data');
  const bin = findPostgresBin();
  const runAs = postgresRunAs();
  mkdirSync(dir, { recursive: true });
  if (runAs) spawnSync('chown', ['-R', runAs, dir]);
  if (existsSync(join(dataDir, 'PG_VERSION'))) return;
  say(`initdb the ${name} cluster in ${relative(projectRoot, dataDir)} (${bin})`);
  const pwFile = join(dir, 'pwfile');
  writeFileSync(pwFile, secret(secretName), { mode: 0o600 });
  if (runAs) spawnSync('chown', [runAs, pwFile]);
  const init = runPg(
    join(bin, 'initdb'),
    [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--pwfile',
      pwFile,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C.UTF-8',
    ],
    runAs,
  );
  rmSync(pwFile);
  if (init.status !== 0) throw new Error(`initdb (${name}) failed:\n${init.output}`);
}

/**
 * Starts one of the stack's clusters (`<dir>/data`, its socket and log in `<dir>`) on `port` of 127.0.0.1 and records
 * its pid as `name`'s. Dev-stack settings: durability traded for test speed (a clean restart keeps everything; an OS
 * crash may not); `settings` are the cluster's own (connections, memory).
 */
function startCluster(name: string, dir: string, port: number, settings: string[], say: Say): void {
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const options = [
    `port=${port}`,
    'listen_addresses=127.0.0.1',
    `unix_socket_directories=${dir}`,
    'fsync=off',
    'synchronous_commit=off',
    'full_page_writes=off',
    ...settings,
    'max_wal_size=2GB',
    'log_min_messages=warning',
    'max_locks_per_transaction=256',
  ]
    .map((setting) => `-c ${setting}`)
    .join(' ');
  say(`starting ${name} on :${port}`);
  const started = runPg(
    join(findPostgresBin(), 'pg_ctl'),
    ['-D', dataDir, '-l', logFile, '-o', options, '-w', '-t', '60', 'start'],
    postgresRunAs(),
  );
  if (started.status !== 0)
    throw new Error(`pg_ctl start (${name}) failed:\n${started.output}\nSee ${relative(projectRoot, logFile)}`);
  writeFileSync(pidFile(name), readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!);
}

async function upPgScratch(say: Say): Promise<void> {
  const dir = join(stackDir, 'pg-scratch');
  const dataDir = join(dir, 'data');
  const bin = findPostgresBin();
  const runAs = postgresRunAs();
  if (await portOpen(ports.pgScratch)) {
    if (!(alive(readPid('pg-scratch')) || existsSync(join(dataDir, 'postmaster.pid'))))
      throw new Error(
        `Port ${ports.pgScratch} is taken by a process that is not this stack's scratch PostgreSQL. Stop it or set STACK_PG_SCRATCH_PORT.`,
      );
    say(`pg-scratch already up on :${ports.pgScratch}`);
  } else {
    initCluster('pg-scratch', dir, 'postgres-scratch', say);
    startCluster('pg-scratch', dir, ports.pgScratch, ['max_connections=200', 'shared_buffers=128MB'], say);
    await waitFor('pg-scratch', () => portOpen(ports.pgScratch), 30_000, join(dir, 'postgres.log'));
  }
  // The role, over the Unix socket (trusted): CREATEDB and nothing else, whatever an earlier run gave it.
  const password = secret('scratch').replace(/'/g, "''");
  const sql = `DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${scratchRole}') THEN CREATE ROLE ${scratchRole}; END IF;
  END $$;
  ALTER ROLE ${scratchRole} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '${password}';`;
  const made = runPg(
    join(bin, 'psql'),
    [
      '-X',
      '-q',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      dir,
      '-p',
      String(ports.pgScratch),
      '-U',
      'postgres',
      '-d',
      'postgres',
      '-c',
      sql,
    ],
    runAs,
  );
  if (made.status !== 0) throw new Error(`could not make the scratch role ${scratchRole}:\n${made.output}`);
}

async function upTemporal(say: Say): Promise<void> {
  if (await portOpen(ports.temporal)) {
    if (alive(readPid('temporal'))) return say(`temporal already up on :${ports.temporal}`);
    throw new Error(
      `Port ${ports.temporal} is taken by a process that is not this stack's Temporal. Stop it or set STACK_TEMPORAL_PORT.`,
    );
  }
  const binary = await ensureGoBinary(
    'temporal',
    [TEMPORAL_MODULE, 'github.com/temporalio/cli/cmd/temporal@v1.4.1'],
    say,
  );
  mkdirSync(join(stackDir, 'temporal'), { recursive: true });
  const args = [
    'server',
    'start-dev',
    '--db-filename',
    join(stackDir, 'temporal', 'temporal.db'),
    '--ip',
    '127.0.0.1',
    '--port',
    String(ports.temporal),
    '--ui-port',
    String(ports.temporalUi),
    '--log-level',
    'warn',
  ];
  for (const [name, type] of Object.entries(searchAttributes)) args.push('--search-attribute', `${name}=${type}`);
  say(`starting temporal dev server on :${ports.temporal} (Web UI http://127.0.0.1:${ports.temporalUi})`);
  startDetached('temporal', binary, args);
  await waitFor('temporal', () => portOpen(ports.temporal), 90_000, join(stackDir, 'temporal.log'));
}

/**
 * Starts one MinIO server (the main one, or minio-wal) unless this stack's is already listening on its port. Both use
 * the same binary and the same credentials; each has its own data directory, pid file and log.
 */
async function startMinio(
  name: 'minio' | 'minio-wal',
  port: number,
  consolePort: number,
  portVariable: string,
  extraArgs: string[],
  env: StackEnv,
  say: Say,
): Promise<void> {
  if (await portOpen(port)) {
    if (alive(readPid(name))) return say(`${name} already up on :${port}`);
    throw new Error(
      `Port ${port} is taken by a process that is not this stack's ${name}. Stop it or set ${portVariable}.`,
    );
  }
  if (alive(readPid(name))) throw new Error(`${name} is running but not listening; see .stack/${name}.log`);
  const binary = await ensureGoBinary('minio', [MINIO_MODULE], say);
  const dataDir = join(stackDir, name, 'data');
  mkdirSync(dataDir, { recursive: true });
  say(`starting ${name} on :${port}${extraArgs.length ? ' (TLS)' : ''}`);
  startDetached(
    name,
    binary,
    [
      'server',
      dataDir,
      '--address',
      `127.0.0.1:${port}`,
      '--console-address',
      `127.0.0.1:${consolePort}`,
      '--quiet',
      ...extraArgs,
    ],
    {
      ...process.env,
      MINIO_ROOT_USER: env.AWS_ACCESS_KEY_ID,
      MINIO_ROOT_PASSWORD: env.AWS_SECRET_ACCESS_KEY,
      MINIO_BROWSER: 'off',
      MINIO_UPDATE: 'off',
      MINIO_CI_CD: '1',
    },
  );
}

/** Waits until `bucket` answers on `s3`, creating it with `create` when MinIO says it does not exist. */
async function ensureBucket(
  name: string,
  s3: S3Client,
  bucket: string,
  create: () => Promise<void>,
  say: Say,
): Promise<void> {
  try {
    await waitFor(
      name,
      async () => {
        try {
          await s3.send(new HeadBucketCommand({ Bucket: bucket }));
          return true;
        } catch (error) {
          const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          if (status !== 404) return false;
          await create();
          say(`created bucket ${bucket} in ${name}`);
          return true;
        }
      },
      60_000,
      join(stackDir, `${name}.log`),
    );
  } finally {
    s3.destroy();
  }
}

async function upMinio(say: Say, env: StackEnv): Promise<void> {
  await startMinio('minio', ports.minio, ports.minioConsole, 'STACK_MINIO_PORT', [], env, say);
  const s3 = new S3Client({
    endpoint: env.AWS_ENDPOINT_URL_S3,
    region: env.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
  });
  await ensureBucket(
    'minio',
    s3,
    env.STACK_S3_BUCKET,
    async () => {
      // Object lock makes backups immutable; it implies versioning. Fall back to plain versioning if refused.
      try {
        await s3.send(new CreateBucketCommand({ Bucket: env.STACK_S3_BUCKET, ObjectLockEnabledForBucket: true }));
      } catch {
        await s3.send(new CreateBucketCommand({ Bucket: env.STACK_S3_BUCKET }));
        await s3.send(
          new PutBucketVersioningCommand({
            Bucket: env.STACK_S3_BUCKET,
            VersioningConfiguration: { Status: 'Enabled' },
          }),
        );
      }
    },
    say,
  );
}

/**
 * The TLS certificate of minio-wal: self-signed, for localhost and 127.0.0.1, made once with openssl. MinIO (root, or
 * this user) reads private.key; pgBackRest, run as 'postgres', trusts public.crt (repo1-storage-ca-file).
 */
function ensureTls(say: Say): void {
  mkdirSync(tlsDir, { recursive: true });
  chmodSync(tlsDir, 0o755);
  if (!existsSync(tlsCert) || !existsSync(tlsKey)) {
    if (!which('openssl'))
      throw new Error("openssl is not on PATH (minio-wal's certificate is made with it): apt-get install openssl");
    say('making a self-signed TLS certificate for minio-wal in .stack/tls');
    const made = spawnSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '3650',
        '-subj',
        '/CN=localhost',
        '-addext',
        // pgBackRest 2.45 checks only DNS names, against repo1-storage-host (127.0.0.1); Node checks the IP entry.
        'subjectAltName=DNS:localhost,DNS:127.0.0.1,IP:127.0.0.1',
        '-keyout',
        tlsKey,
        '-out',
        tlsCert,
      ],
      { encoding: 'utf8' },
    );
    if (made.status !== 0) throw new Error(`openssl could not make the certificate:\n${made.stderr}`);
  }
  chmodSync(tlsKey, 0o600);
  chmodSync(tlsCert, 0o644);
}

async function upMinioWal(say: Say, env: StackEnv): Promise<void> {
  ensureTls(say);
  await startMinio(
    'minio-wal',
    ports.minioWal,
    ports.minioWalConsole,
    'STACK_MINIO_WAL_PORT',
    ['--certs-dir', tlsDir],
    env,
    say,
  );
  const s3 = new S3Client({
    endpoint: `https://127.0.0.1:${ports.minioWal}`,
    region: env.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
    requestHandler: new NodeHttpHandler({ httpsAgent: new Agent({ ca: readFileSync(tlsCert) }) }),
  });
  // No object lock here: pgBackRest expires old backups and their WAL itself (repo1-retention-full).
  await ensureBucket(
    'minio-wal',
    s3,
    walBucket,
    async () => void (await s3.send(new CreateBucketCommand({ Bucket: walBucket }))),
    say,
  );
}

/**
 * pgBackRest's config: the repository is the bucket in minio-wal (path-style S3 over TLS, trusting .stack/tls), the
 * stanza is the stack's cluster. It holds the S3 secret, so it is 0600, owned by 'postgres' when root (who runs
 * archive-push). Rewritten only when it changes; log, lock and spool directories live next to it.
 */
function writePgbackrestConfig(env: StackEnv): void {
  const runAs = postgresRunAs();
  for (const dir of ['log', 'lock', 'spool']) mkdirSync(join(pgbackrestDir, dir), { recursive: true });
  chmodSync(pgbackrestDir, 0o750);
  const content = [
    "# Written by scripts/stack.ts at each 'up'. pgBackRest archives the stack PostgreSQL's WAL into minio-wal.",
    '[global]',
    'repo1-type=s3',
    'repo1-s3-endpoint=localhost',
    'repo1-storage-host=127.0.0.1',
    `repo1-storage-port=${ports.minioWal}`,
    `repo1-s3-bucket=${walBucket}`,
    `repo1-s3-region=${env.AWS_REGION}`,
    `repo1-s3-key=${env.AWS_ACCESS_KEY_ID}`,
    `repo1-s3-key-secret=${env.AWS_SECRET_ACCESS_KEY}`,
    'repo1-s3-uri-style=path',
    `repo1-storage-ca-file=${tlsCert}`,
    'repo1-path=/pgbackrest',
    'repo1-retention-full=2',
    'compress-type=lz4',
    'start-fast=y',
    'archive-timeout=120',
    // A local MinIO answers at once: with the default 60 s, retries nest into 8 minutes before an archive-push to a
    // stopped minio-wal fails (and PostgreSQL's shutdown waits for its archiver); 10 s makes that 80 s.
    'io-timeout=10',
    'log-level-console=warn',
    'log-level-file=info',
    `log-path=${join(pgbackrestDir, 'log')}`,
    `lock-path=${join(pgbackrestDir, 'lock')}`,
    `spool-path=${join(pgbackrestDir, 'spool')}`,
    '',
    `[${pgbackrestStanza}]`,
    `pg1-path=${join(stackDir, 'pg', 'data')}`,
    `pg1-port=${ports.postgres}`,
    `pg1-socket-path=${join(stackDir, 'pg')}`,
    'pg1-user=postgres',
    '',
  ].join('\n');
  if (!existsSync(pgbackrestConfig) || readFileSync(pgbackrestConfig, 'utf8') !== content)
    writeFileSync(pgbackrestConfig, content, { mode: 0o600 });
  chmodSync(pgbackrestConfig, 0o600);
  if (runAs) spawnSync('chown', ['-R', runAs, pgbackrestDir]);
}

/**
 * Once PostgreSQL and minio-wal answer: the stanza (stanza-create is idempotent), `check` (a WAL switch archived
 * end to end), and a first full backup when the repository has none.
 */
function upPgbackrest(say: Say): void {
  const step = (what: string, args: string[]): string => {
    const result = pgbackrest([`--stanza=${pgbackrestStanza}`, ...args]);
    if (result.status !== 0)
      throw new Error(
        `pgbackrest ${args.join(' ')} failed (exit ${result.status}) ${what}:\n${result.output.trim()}\n` +
          `Logs in .stack/pgbackrest/log; config ${pgbackrestConfig}`,
      );
    return result.stdout;
  };
  say(`pgbackrest: stanza-create (stanza ${pgbackrestStanza}, repository s3://${walBucket}/pgbackrest in minio-wal)`);
  step('creating the stanza', ['stanza-create']);
  say('pgbackrest: check (a WAL switch archived through archive_command)');
  step('checking archiving', ['check']);
  const info = JSON.parse(step('reading the repository', ['info', '--output=json'])) as PgbackrestInfo[];
  const backups = info.find((s) => s.name === pgbackrestStanza)?.backup ?? [];
  if (backups.length > 0) {
    const last = backups[backups.length - 1];
    say(`pgbackrest: ${backups.length} backup(s), newest ${last.label} (${last.type})`);
    return;
  }
  say('pgbackrest: no backup yet, taking a full backup');
  step('taking the first full backup', ['backup', '--type=full']);
}

/** The parts of `pgbackrest info --output=json` the stack and its test read. */
export interface PgbackrestInfo {
  name: string;
  status: { code: number; message: string };
  backup: Array<{ label: string; type: string; timestamp: { start: number; stop: number } }>;
  archive: Array<{ id: string; min: string | null; max: string | null }>;
}

// ---------------------------------------------------------------------------------------------------------------
// commands

export function writeEnvFile(env: StackEnv): string {
  const file = join(stackDir, 'env');
  const lines = Object.entries(env).map(([k, v]) => `export ${k}='${v}'`);
  writeFileSync(file, `# written by 'npm run stack -- up'; source it: . .stack/env\n${lines.join('\n')}\n`, {
    mode: 0o600,
  });
  return file;
}

/** Adds one `host:port:db:user:password` line to a pgpass file, replacing an older line for the same user. */
export function addPgpassEntry(file: string, line: string): void {
  const prefix = line.split(':').slice(0, 4).join(':') + ':';
  const lines = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((l) => l && !l.startsWith(prefix))
    : [];
  writeFileSync(file, [...lines, line].join('\n') + '\n', { mode: 0o600 });
}

/** Brings the whole stack up (idempotent) and returns its environment. */
export async function stackUp(say: Say = defaultSay): Promise<StackEnv> {
  findPgbackrest(); // before anything starts: without it, PostgreSQL's archive_command cannot work
  mkdirSync(stackDir, { recursive: true });
  const env = stackEnv();
  // Build/fetch the two Go binaries first, in parallel, because that is the slow part of a first run.
  await Promise.all([
    ensureGoBinary('temporal', [TEMPORAL_MODULE, 'github.com/temporalio/cli/cmd/temporal@v1.4.1'], say),
    ensureGoBinary('minio', [MINIO_MODULE], say),
  ]);
  writePgbackrestConfig(env);
  ensureBackupSigningKey(say);
  await Promise.all([upPostgres(say), upPgScratch(say), upTemporal(say), upMinio(say, env), upMinioWal(say, env)]);
  upPgbackrest(say);
  addPgpassEntry(env.PGPASSFILE, `127.0.0.1:${ports.postgres}:*:postgres:${secret('postgres')}`);
  addPgpassEntry(env.PGPASSFILE, `127.0.0.1:${ports.pgScratch}:*:postgres:${secret('postgres-scratch')}`);
  addPgpassEntry(env.PGPASSFILE, `127.0.0.1:${ports.pgScratch}:*:${scratchRole}:${secret('scratch')}`);
  writeEnvFile(env);
  return env;
}

/** Stops one of the stack's clusters (`<dir>/data`) that this stack started, and forgets its pid. */
function stopCluster(name: string, dir: string, say: Say): void {
  const dataDir = join(dir, 'data');
  if (alive(readPid(name)) && existsSync(join(dataDir, 'postmaster.pid'))) {
    say(`stopping ${name}`);
    const pgCtl = join(findPostgresBin(), 'pg_ctl');
    let result = runPg(pgCtl, ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'], postgresRunAs());
    if (result.status !== 0 && existsSync(join(dataDir, 'postmaster.pid'))) {
      // A fast shutdown waits for the archiver, which retries a WAL push while minio-wal does not answer.
      say(
        `${name} did not stop within 60 s (an archiver may be retrying a WAL push to minio-wal; see ` +
          `${relative(projectRoot, join(dir, 'postgres.log'))}): stopping it with -m immediate (it recovers at its next start)`,
      );
      result = runPg(pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], postgresRunAs());
    }
    if (result.status !== 0) say(`pg_ctl stop (${name}): ${result.output.trim()}`);
  }
  rmSync(pidFile(name), { force: true });
}

export async function stackDown(say: Say = defaultSay): Promise<void> {
  // PostgreSQL first: its archiver may still push WAL to minio-wal while it shuts down.
  stopCluster('postgres', join(stackDir, 'pg'), say);
  stopCluster('pg-scratch', join(stackDir, 'pg-scratch'), say);
  for (const name of ['temporal', 'minio', 'minio-wal']) {
    const pid = readPid(name);
    if (alive(pid)) {
      say(`stopping ${name} (pid ${pid})`);
      process.kill(pid!, 'SIGTERM');
      for (let i = 0; i < 40 && alive(pid); i++) await new Promise((r) => setTimeout(r, 250));
      if (alive(pid)) process.kill(pid!, 'SIGKILL');
    }
    rmSync(pidFile(name), { force: true });
  }
}

/** Restarts only the stack's PostgreSQL (used by the chaos run). */
export async function restartPostgres(say: Say = defaultSay): Promise<void> {
  const dataDir = join(stackDir, 'pg', 'data');
  const result = runPg(join(findPostgresBin(), 'pg_ctl'), ['-D', dataDir, '-m', 'fast', '-w', 'stop'], postgresRunAs());
  if (result.status !== 0) throw new Error(`pg_ctl stop failed: ${result.output}`);
  await upPostgres(say);
}

/** Restarts only the Temporal dev server, keeping its state on disk (used by the chaos run). */
export async function restartTemporal(say: Say = defaultSay): Promise<void> {
  const pid = readPid('temporal');
  if (alive(pid)) {
    process.kill(pid!, 'SIGTERM');
    for (let i = 0; i < 60 && alive(pid); i++) await new Promise((r) => setTimeout(r, 250));
    if (alive(pid)) process.kill(pid!, 'SIGKILL');
  }
  for (let i = 0; i < 40 && (await portOpen(ports.temporal)); i++) await new Promise((r) => setTimeout(r, 250));
  await upTemporal(say);
}

export interface ServiceStatus {
  name: string;
  pid?: number;
  running: boolean;
  port: number;
  listening: boolean;
}

export async function stackStatus(): Promise<ServiceStatus[]> {
  const services: Array<[string, number]> = [
    ['postgres', ports.postgres],
    ['pg-scratch', ports.pgScratch],
    ['temporal', ports.temporal],
    ['minio', ports.minio],
    ['minio-wal', ports.minioWal],
  ];
  return Promise.all(
    services.map(async ([name, port]) => {
      const pid = readPid(name);
      return { name, pid, running: alive(pid), port, listening: await portOpen(port) };
    }),
  );
}

/** Reads `.stack/env` written by `up`. */
export function readStackEnv(): StackEnv {
  const file = join(stackDir, 'env');
  if (!existsSync(file)) throw new Error("The dev stack is not up: run 'npm run stack -- up' first.");
  const env: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = /^export (\w+)='(.*)'$/.exec(line);
    if (match) env[match[1]] = match[2];
  }
  return env as unknown as StackEnv;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const json = rest.includes('--json');
  switch (command) {
    case 'up': {
      const env = await stackUp();
      if (json)
        console.log(
          JSON.stringify({
            ...env,
            AWS_SECRET_ACCESS_KEY: '***',
            STACK_PG_URL: env.STACK_PG_URL.replace(/:[^:@/]+@/, ':***@'),
            STACK_PG_SCRATCH_URL: env.STACK_PG_SCRATCH_URL.replace(/:[^:@/]+@/, ':***@'),
          }),
        );
      else
        console.log(`stack is up. Load its environment with:  . .stack/env\nTemporal Web UI: ${env.TEMPORAL_UI_URL}`);
      return 0;
    }
    case 'down':
      await stackDown();
      console.log('stack is down');
      return 0;
    case 'status': {
      const status = await stackStatus();
      if (json) console.log(JSON.stringify(status));
      else
        for (const s of status)
          console.log(
            `${s.name.padEnd(10)} ${s.running && s.listening ? 'up  ' : 'down'}  pid ${s.pid ?? '-'}  port ${s.port}`,
          );
      return status.every((s) => s.running && s.listening) ? 0 : 1;
    }
    default:
      console.error(
        'usage: npm run stack -- up|down|status [--json]\n' +
          '  up      start Temporal, PostgreSQL, MinIO and minio-wal (WAL archive, pgBackRest) in the background\n' +
          '          (idempotent); writes .stack/env\n' +
          '  down    stop exactly the processes that up started\n' +
          '  status  show each service; exit 0 only if all are up',
      );
      return 2;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: Error) => {
      console.error(`[stack] ${error.message}`);
      process.exit(1);
    },
  );
}
