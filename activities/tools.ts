/**
 * The external tools a worker runs (pg_restore, pgbackrest, pg_ctl, pg_waldump...): spawned with an argument list,
 * never through a shell, and their stderr reduced to its error lines so that no row value reaches a message.
 */
import { spawn } from 'node:child_process';
import { reduceToolStderr } from './errors';

export function runTool(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  signal: AbortSignal,
  stdoutToString = false,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    let cut = false;
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdoutToString) out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      if (err.length > 65_536) {
        err = err.slice(-65_536);
        cut = true;
      }
    });
    // The server's CONTEXT and DETAIL lines carry row data (`COPY t, line 3, column x: "<value>"`): only the error
    // lines are kept (activities/errors/ reduceToolStderr); a line cut by the bound above is dropped whole.
    const reducedStderr = () => reduceToolStderr(cut ? err.slice(err.indexOf('\n') + 1) : err).slice(-4000);
    const abort = () => child.kill('SIGTERM');
    signal.addEventListener('abort', abort, { once: true });
    child.on('error', reject);
    child.on('close', (code) => {
      signal.removeEventListener('abort', abort);
      if (signal.aborted) reject(signal.reason ?? new Error(`${command} cancelled`));
      else if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      // Passwords never reach these messages: they are not on the command line, and libpq does not print them.
      else reject(new Error(`${command} exited with ${code}: ${reducedStderr()}`));
    });
  });
}

let pgRestoreVersion: string | undefined;
/** This worker's `pg_restore --version`, read once per process. */
export async function localPgRestoreVersion(signal: AbortSignal): Promise<string> {
  pgRestoreVersion ??= (await runTool('pg_restore', ['--version'], process.env, signal, true)).trim();
  return pgRestoreVersion;
}
