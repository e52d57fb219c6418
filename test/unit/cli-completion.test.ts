/**
 * Shell completion and the flags behind it: each command declares its flags once (`flags`, which its run() parses
 * with), `--help` names every one of them, and `tenant-restore completion bash|zsh` is generated from them.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { commandModules } from '../helpers/commands';
import { conflictPolicies } from '../../activities/restore-types';
import { completionScript } from '../../cli/commands/completion';
import { listCommand } from '../../cli/commands/inspect';
import { startCommand } from '../../cli/commands/start';
import { listStatuses } from '../../cli/client/inspect';
import { commands as registry } from '../../cli/main';

const root = join(__dirname, '..', '..');
// In the registry's order (test/unit/cli-help.test.ts checks that it is the registry).
const commands = commandModules;

describe('every command declares its flags, and its --help names them', () => {
  it('the commands here are the registry', () => {
    expect(commands.map((c) => c.name)).toEqual(registry.map((c) => c.name));
  });

  it('each flag, the values it takes and the subcommands are in the usage', () => {
    for (const command of commands) {
      for (const [name, spec] of Object.entries(command.flags)) {
        expect(command.usage, `${command.name} --${name}`).toMatch(new RegExp(`--${name}(?![a-z-])`));
        if (spec.choices)
          expect(command.usage, `${command.name} --${name}`).toContain(`--${name} ${spec.choices.join('|')}`);
      }
      for (const sub of command.subcommands ?? [])
        expect(command.usage, `${command.name} ${sub}`).toMatch(new RegExp(`\\b${sub}\\b`));
    }
  });

  it('enumerated values are the ones the commands accept', () => {
    expect(startCommand.flags!.conflict!.choices).toEqual(conflictPolicies);
    expect(listCommand.flags!.status!.choices).toEqual(Object.keys(listStatuses));
  });
});

/** Asks the bash script what it completes for `words` (the last one being completed). */
function bashCompletes(script: string, words: string[]): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'completion-'));
  writeFileSync(join(dir, 'completion.bash'), script);
  writeFileSync(join(dir, 'files.json'), '{}');
  const quoted = words.map((w) => `'${w}'`).join(' ');
  const out = execFileSync(
    'bash',
    [
      '-c',
      `source ./completion.bash; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _tenant_restore; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { cwd: dir, encoding: 'utf8' },
  );
  return out.split('\n').filter(Boolean);
}

describe('tenant-restore completion', () => {
  const bash = completionScript('bash', commands);

  it('bash: a script that bash parses, which offers commands, flags, enumerated values and files', () => {
    const check = spawnSync('bash', ['-n'], { input: bash, encoding: 'utf8' });
    expect(check.status, check.stderr).toBe(0);
    expect(bash).toContain(`--conflict) COMPREPLY=($(compgen -W 'skip overwrite fail' -- "$cur"))`);
    expect(bash).toContain('complete -F _tenant_restore tenant-restore');
    expect(bashCompletes(bash, ['tenant-restore', 'st'])).toEqual(['start', 'status']);
    expect(bashCompletes(bash, ['tenant-restore', 'start', '--conflict', ''])).toEqual(['skip', 'overwrite', 'fail']);
    expect(bashCompletes(bash, ['tenant-restore', 'start', '--output', ''])).toEqual(['text', 'json']);
    expect(bashCompletes(bash, ['tenant-restore', 'start', '--allow-'])).toEqual([
      '--allow-partial',
      '--allow-unverified-backup',
    ]);
    expect(bashCompletes(bash, ['tenant-restore', 'start', '--live', ''])).toEqual([]);
    expect(bashCompletes(bash, ['tenant-restore', 'start', '--config', 'fi'])).toEqual(['files.json']);
    expect(bashCompletes(bash, ['tenant-restore', 'config', 'check', 'fi'])).toEqual(['files.json']);
    expect(bashCompletes(bash, ['tenant-restore', 'config', ''])).toEqual(['schema', 'check']);
    expect(bashCompletes(bash, ['tenant-restore', 'drill', 'sch'])).toEqual(['schedule', 'schedules']);
    expect(bashCompletes(bash, ['tenant-restore', 'list', '--kind', ''])).toEqual(['restore', 'drill', 'discover']);
    expect(bashCompletes(bash, ['tenant-restore', 'approve', '--'])).toEqual([
      '--tenants',
      '--json',
      '--output',
      '--help',
    ]);
  });

  it('zsh: one _arguments spec per command, from the same flags', () => {
    const zsh = completionScript('zsh', commands);
    expect(zsh).toMatch(/^#compdef tenant-restore\n/);
    expect(zsh).toContain("'--conflict=:conflict:(skip overwrite fail)'");
    expect(zsh).toContain("'--config=:config:_files'");
    expect(zsh).toContain("'status:show a restore'\\''s progress");
    const zshBinary = spawnSync('zsh', ['--version']);
    if (zshBinary.status === 0) {
      const check = spawnSync('zsh', ['-n'], { input: zsh, encoding: 'utf8' });
      expect(check.status, check.stderr).toBe(0);
    }
  });

  it('the command prints it, loading every command of the registry', () => {
    const out = execFileSync(
      process.execPath,
      ['--require', require.resolve('tsx/cjs'), join(root, 'cli', 'main.ts'), 'completion', 'bash'],
      { cwd: root, encoding: 'utf8' },
    );
    expect(out).toBe(bash);
  });
});
