// What the worker loads: every workflow type, and nothing that is not deterministic.
export { stackCheck } from './stack-check';
export { bulkRestore } from './bulk-restore';
export { restoreUnit } from './restore-unit';
export { restoreDrill } from './restore-drill';
export { discover } from './discover';
export { whenDeleted } from './when';
