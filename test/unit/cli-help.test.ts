/**
 * The command line's own logic, without services: the lazy command registry agrees with each command module, typos get
 * a suggestion, `--output` maps onto `--json`, and a flag given twice is refused.
 */
import { describe, expect, it } from 'vitest';
import { commandModules } from '../helpers/commands';
import { listStatuses } from '../../cli/client/inspect';
import { concurrencyRange } from '../../workflows/definitions';
import { UsageError } from '../../cli/client/input';
import { closest, parseFlags } from '../../cli/commands/common';
import { commands, outputFlag } from '../../cli/main';
import { concurrencyCommand } from '../../cli/commands/control';
import { listCommand } from '../../cli/commands/inspect';

describe('the command registry', () => {
  it("repeats each module's name and summary exactly (top-level --help loads no module)", () => {
    // Imported here directly: `load` requires them through tsx's CommonJS hook, which the CLI tests exercise.
    const modules = commandModules;
    expect(commands.map((c) => [c.name, c.summary])).toEqual(modules.map((c) => [c.name, c.summary]));
  });
  it("list's usage names exactly the statuses --status takes (written out, so that list --help loads no client)", () => {
    expect(listCommand.usage).toContain(`[--status ${Object.keys(listStatuses).join('|')}]`);
  });
  it("concurrency's usage states the range the workflow's validator enforces (written out for the same reason)", () => {
    expect(concurrencyCommand.usage).toContain(`(${concurrencyRange.min}..${concurrencyRange.max})`);
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
