/**
 * The command line's own logic, without services: the lazy command registry agrees with each command module, typos get
 * a suggestion, `--output` maps onto `--json`, and a flag given twice is refused.
 */
import { describe, expect, it } from 'vitest';
import { UsageError } from '../../cli/client/input';
import { closest, parseFlags } from '../../cli/commands/common';
import { commands, outputFlag } from '../../cli/main';
import {
  approveCommand,
  cancelCommand,
  concurrencyCommand,
  pauseCommand,
  resumeCommand,
} from '../../cli/commands/control';
import { drillCommand } from '../../cli/commands/drill';
import { describeCommand, listCommand } from '../../cli/commands/inspect';
import { planCommand } from '../../cli/commands/plan';
import { reportCommand } from '../../cli/commands/report';
import { startCommand } from '../../cli/commands/start';
import { statusCommand } from '../../cli/commands/status';
import { workerCommand } from '../../cli/commands/worker';

describe('the command registry', () => {
  it("repeats each module's name and summary exactly (top-level --help loads no module)", () => {
    // Imported here directly: `load` requires them through tsx's CommonJS hook, which the CLI tests exercise.
    const modules = [
      workerCommand,
      planCommand,
      startCommand,
      statusCommand,
      listCommand,
      describeCommand,
      pauseCommand,
      resumeCommand,
      cancelCommand,
      approveCommand,
      concurrencyCommand,
      reportCommand,
      drillCommand,
    ];
    expect(commands.map((c) => [c.name, c.summary])).toEqual(modules.map((c) => [c.name, c.summary]));
  });
});

describe('did you mean', () => {
  it('suggests the nearest name within two edits, and nothing further away', () => {
    expect(
      closest(
        'stauts',
        commands.map((c) => c.name),
      ),
    ).toBe('status');
    expect(
      closest(
        'describ',
        commands.map((c) => c.name),
      ),
    ).toBe('describe');
    expect(
      closest(
        'frobnicate',
        commands.map((c) => c.name),
      ),
    ).toBeUndefined();
  });
  it('an unknown flag names the nearest known one', () => {
    expect(() => parseFlags(['--tenant', '1'], { tenants: { type: 'string' } }, 'usage')).toThrow(
      /Unknown option '--tenant'[\s\S]*Did you mean --tenants\?/,
    );
  });
});

describe('flags', () => {
  it('--output json is --json, --output text the default, anything else refused', () => {
    expect(outputFlag(['x', '--output', 'json'])).toEqual(['x', '--json']);
    expect(outputFlag(['--output=json', 'x'])).toEqual(['--json', 'x']);
    expect(outputFlag(['--output', 'text', 'x'])).toEqual(['x']);
    expect(() => outputFlag(['--output', 'yaml'])).toThrow(/--output 'yaml': text or json/);
  });
  it('a flag given twice is refused; a multiple flag is not', () => {
    expect(() => parseFlags(['--live', 'a', '--live', 'b'], { live: { type: 'string' } }, 'usage')).toThrow(UsageError);
    expect(() => parseFlags(['--live', 'a', '--live', 'b'], { live: { type: 'string' } }, 'usage')).toThrow(
      "--live is given 2 times ('a', 'b'): give it once.",
    );
    const { values } = parseFlags(['--t', 'a', '--t', 'b'], { t: { type: 'string', multiple: true } }, 'usage');
    expect(values.t).toEqual(['a', 'b']);
  });
});
