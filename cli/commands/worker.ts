import { runWorker } from '../../workers/worker';
import { parseIntegerFlag } from '../client/input';
import { parseFlags, type Command } from './common';

const usage = 'tenant-restore worker [--task-queue <name>] [--max-activities N]';

export const workerCommand: Command = {
  name: 'worker',
  summary: 'run a worker that executes restores (stops on SIGINT/SIGTERM)',
  usage,
  async run(argv) {
    const { values } = parseFlags(
      argv,
      { 'task-queue': { type: 'string' }, 'max-activities': { type: 'string' } },
      usage,
    );
    await runWorker({
      taskQueue: values['task-queue'],
      maxConcurrentActivities: values['max-activities']
        ? parseIntegerFlag('--max-activities', values['max-activities'], 1)
        : undefined,
    });
    return 0;
  },
};
