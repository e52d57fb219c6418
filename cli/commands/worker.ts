import { parseFlags, type Command, type Flags } from './common';

// The worker loads when the command runs, not with this module: main.ts loads it for `worker --help`, which then
// stays clear of the worker SDK, the AWS SDK and pg.
/* eslint-disable @typescript-eslint/no-require-imports */
const worker = () => require('../../workers/worker') as typeof import('../../workers/worker');
const input = () => require('../client/input') as typeof import('../client/input');
/* eslint-enable @typescript-eslint/no-require-imports */

const usage = 'tenant-restore worker [--task-queue <name>] [--max-activities N]';

const flags = { 'task-queue': { type: 'string' }, 'max-activities': { type: 'string' } } as const satisfies Flags;

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run a worker that executes restores (stops on SIGINT/SIGTERM)',
  usage,
  flags,
  async run(argv) {
    const { values } = parseFlags(argv, flags, usage);
    await worker().runWorker({
      taskQueue: values['task-queue'],
      maxConcurrentActivities: values['max-activities']
        ? input().parseIntegerFlag('--max-activities', values['max-activities'], 1)
        : undefined,
    });
    return 0;
  },
};
