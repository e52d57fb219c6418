/**
 * The local dev stack: a real Temporal dev server, a real PostgreSQL cluster and a real MinIO, each started in the
 * background with its state under `.stack/`. `up` is idempotent; `down` stops exactly the processes whose pid files
 * it wrote, never anything found by name.
 *
 *   npm run stack -- up | down | status [--json]
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { CreateBucketCommand, HeadBucketCommand, PutBucketVersioningCommand, S3Client } from '@aws-sdk/client-s3';

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
  temporal: Number(process.env.STACK_TEMPORAL_PORT ?? 7233),
  temporalUi: Number(process.env.STACK_TEMPORAL_UI_PORT ?? 8233),
  minio: Number(process.env.STACK_MINIO_PORT ?? 9010),
  minioConsole: Number(process.env.STACK_MINIO_CONSOLE_PORT ?? 9011),
};

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
}

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
  };
}

async function upPostgres(say: Say): Promise<void> {
  const dataDir = join(stackDir, 'pg', 'data');
  const socketDir = join(stackDir, 'pg');
  if (await portOpen(ports.postgres)) {
    if (alive(readPid('postgres')) || existsSync(join(dataDir, 'postmaster.pid')))
      return say(`postgres already up on :${ports.postgres}`);
    throw new Error(
      `Port ${ports.postgres} is taken by a process that is not this stack's PostgreSQL. Stop it or set STACK_PG_PORT.`,
    );
  }
  const bin = findPostgresBin();
  const runAs = postgresRunAs();
  mkdirSync(socketDir, { recursive: true });
  if (runAs) spawnSync('chown', ['-R', runAs, socketDir]);
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    say(`initdb a PostgreSQL cluster in .stack/pg/data (${bin})`);
    const pwFile = join(socketDir, 'pwfile');
    writeFileSync(pwFile, secret('postgres'), { mode: 0o600 });
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
    if (init.status !== 0) throw new Error(`initdb failed:\n${init.output}`);
  }
  // Dev-stack settings: durability traded for test speed (a clean restart keeps everything; an OS crash may not).
  const options = [
    `-c port=${ports.postgres}`,
    `-c listen_addresses=127.0.0.1`,
    `-c unix_socket_directories=${socketDir}`,
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
    '-c max_connections=300',
    '-c shared_buffers=256MB',
    '-c max_wal_size=2GB',
    '-c log_min_messages=warning',
    '-c max_locks_per_transaction=256',
  ].join(' ');
  say(`starting postgres on :${ports.postgres}`);
  const started = runPg(
    join(bin, 'pg_ctl'),
    ['-D', dataDir, '-l', join(socketDir, 'postgres.log'), '-o', options, '-w', '-t', '60', 'start'],
    runAs,
  );
  if (started.status !== 0) throw new Error(`pg_ctl start failed:\n${started.output}\nSee .stack/pg/postgres.log`);
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  writeFileSync(pidFile('postgres'), String(pid));
  await waitFor('postgres', () => portOpen(ports.postgres), 30_000, join(socketDir, 'postgres.log'));
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

async function upMinio(say: Say, env: StackEnv): Promise<void> {
  if (!(await portOpen(ports.minio))) {
    if (alive(readPid('minio'))) throw new Error('minio is running but not listening; see .stack/minio.log');
    const binary = await ensureGoBinary('minio', [MINIO_MODULE], say);
    mkdirSync(join(stackDir, 'minio', 'data'), { recursive: true });
    say(`starting minio on :${ports.minio}`);
    startDetached(
      'minio',
      binary,
      [
        'server',
        join(stackDir, 'minio', 'data'),
        '--address',
        `127.0.0.1:${ports.minio}`,
        '--console-address',
        `127.0.0.1:${ports.minioConsole}`,
        '--quiet',
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
  } else if (alive(readPid('minio'))) {
    say(`minio already up on :${ports.minio}`);
  } else {
    throw new Error(
      `Port ${ports.minio} is taken by a process that is not this stack's MinIO. Stop it or set STACK_MINIO_PORT.`,
    );
  }
  const s3 = new S3Client({
    endpoint: env.AWS_ENDPOINT_URL_S3,
    region: env.AWS_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY },
  });
  await waitFor(
    'minio',
    async () => {
      try {
        await s3.send(new HeadBucketCommand({ Bucket: env.STACK_S3_BUCKET }));
        return true;
      } catch (error) {
        const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
        if (status === 404) {
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
          say(`created bucket ${env.STACK_S3_BUCKET}`);
          return true;
        }
        return false;
      }
    },
    60_000,
    join(stackDir, 'minio.log'),
  );
  s3.destroy();
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
  mkdirSync(stackDir, { recursive: true });
  const env = stackEnv();
  // Build/fetch the two Go binaries first, in parallel, because that is the slow part of a first run.
  await Promise.all([
    ensureGoBinary('temporal', [TEMPORAL_MODULE, 'github.com/temporalio/cli/cmd/temporal@v1.4.1'], say),
    ensureGoBinary('minio', [MINIO_MODULE], say),
  ]);
  await Promise.all([upPostgres(say), upTemporal(say), upMinio(say, env)]);
  addPgpassEntry(env.PGPASSFILE, `127.0.0.1:${ports.postgres}:*:postgres:${secret('postgres')}`);
  writeEnvFile(env);
  return env;
}

export async function stackDown(say: Say = defaultSay): Promise<void> {
  for (const name of ['temporal', 'minio']) {
    const pid = readPid(name);
    if (alive(pid)) {
      say(`stopping ${name} (pid ${pid})`);
      process.kill(pid!, 'SIGTERM');
      for (let i = 0; i < 40 && alive(pid); i++) await new Promise((r) => setTimeout(r, 250));
      if (alive(pid)) process.kill(pid!, 'SIGKILL');
    }
    rmSync(pidFile(name), { force: true });
  }
  const dataDir = join(stackDir, 'pg', 'data');
  if (alive(readPid('postgres')) && existsSync(join(dataDir, 'postmaster.pid'))) {
    say('stopping postgres');
    const result = runPg(
      join(findPostgresBin(), 'pg_ctl'),
      ['-D', dataDir, '-m', 'fast', '-w', 'stop'],
      postgresRunAs(),
    );
    if (result.status !== 0) say(`pg_ctl stop: ${result.output.trim()}`);
  }
  rmSync(pidFile('postgres'), { force: true });
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
    ['temporal', ports.temporal],
    ['minio', ports.minio],
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
            `${s.name.padEnd(9)} ${s.running && s.listening ? 'up  ' : 'down'}  pid ${s.pid ?? '-'}  port ${s.port}`,
          );
      return status.every((s) => s.running && s.listening) ? 0 : 1;
    }
    default:
      console.error(
        'usage: npm run stack -- up|down|status [--json]\n' +
          '  up      start Temporal, PostgreSQL and MinIO in the background (idempotent); writes .stack/env\n' +
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
