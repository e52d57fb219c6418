/**
 * Every command module, imported directly and in the registry's order (cli/main.ts `commands`): the CLI loads them
 * lazily through `require`, and the unit tests compare the two.
 */
import type { Command } from '../../cli/commands/common';
import { completionCommand } from '../../cli/commands/completion';
import { configCommand } from '../../cli/commands/config';
import {
  approveCommand,
  cancelCommand,
  concurrencyCommand,
  pauseCommand,
  resumeCommand,
} from '../../cli/commands/control';
import { discoverCommand } from '../../cli/commands/discover';
import { drillCommand } from '../../cli/commands/drill';
import { describeCommand, listCommand } from '../../cli/commands/inspect';
import { planCommand } from '../../cli/commands/plan';
import { reportCommand } from '../../cli/commands/report';
import { startCommand } from '../../cli/commands/start';
import { statusCommand } from '../../cli/commands/status';
import { whenCommand } from '../../cli/commands/when';
import { workerCommand } from '../../cli/commands/worker';

export const commandModules: Command[] = [
  workerCommand,
  planCommand,
  discoverCommand,
  whenCommand,
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
  configCommand,
  completionCommand,
];
