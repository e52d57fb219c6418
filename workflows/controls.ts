/**
 * The operator's controls of a bulk restore: pause, resume, cancel and setConcurrency. Each but cancel is a Workflow
 * Update that a validator checks and that answers with the state it left; each is also a signal, which the CLI sends
 * for cancel (it must land even when the workflow is busy) and for the others when no worker polls the restore's task
 * queue (cli/client/control.ts). A cancel of the workflow itself (Web UI, `temporal workflow cancel`) is treated like
 * the cancel signal: the parent's body runs non-cancellable so that it can cancel the units, report and clean up.
 */
import { CancellationScope, log, setHandler } from '@temporalio/workflow';
import {
  cancelSignal,
  concurrencyRange,
  pauseSignal,
  pauseUpdate,
  resumeSignal,
  resumeUpdate,
  setConcurrencySignal,
  setConcurrencyUpdate,
  type BulkRestoreState,
  type ControlAck,
} from './definitions';

type ControlState = Pick<BulkRestoreState, 'paused' | 'concurrency' | 'cancelRequested' | 'nextIndex' | 'running'>;

const validConcurrency = (n: unknown): n is number =>
  Number.isInteger(n) && (n as number) >= concurrencyRange.min && (n as number) <= concurrencyRange.max;

export function registerControls(restoreId: string, state: ControlState): void {
  const ack = (changed: boolean): ControlAck => ({
    restoreId,
    paused: state.paused,
    concurrency: state.concurrency,
    cancelRequested: state.cancelRequested,
    changed,
    started: state.nextIndex,
    running: Object.keys(state.running).length,
  });
  const setPaused = (paused: boolean) => {
    const changed = state.paused !== paused;
    state.paused = paused;
    return changed;
  };
  const setConcurrency = (n: number) => {
    const changed = state.concurrency !== n;
    state.concurrency = n;
    return changed;
  };
  const notCancelling = (what: string) => () => {
    if (state.cancelRequested) throw new Error(`restore ${restoreId} is being cancelled: nothing to ${what}.`);
  };
  setHandler(pauseSignal, () => void setPaused(true));
  setHandler(resumeSignal, () => void setPaused(false));
  setHandler(cancelSignal, () => {
    state.cancelRequested = true;
  });
  setHandler(setConcurrencySignal, (n: number) => {
    if (validConcurrency(n)) setConcurrency(n);
    else
      log.warn(`ignored setConcurrency: not an integer in ${concurrencyRange.min}..${concurrencyRange.max}`, {
        value: n,
      });
  });
  setHandler(pauseUpdate, () => ack(setPaused(true)), { validator: notCancelling('pause') });
  setHandler(resumeUpdate, () => ack(setPaused(false)), { validator: notCancelling('resume') });
  setHandler(setConcurrencyUpdate, (n) => ack(setConcurrency(n)), {
    validator: (n) => {
      if (!validConcurrency(n))
        throw new Error(
          `concurrency ${JSON.stringify(n)} is not an integer from ${concurrencyRange.min} to ${concurrencyRange.max}.`,
        );
      notCancelling('change')();
    },
  });
  CancellationScope.current().cancelRequested.catch(() => {
    state.cancelRequested = true;
  });
}
