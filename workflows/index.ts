// What the worker loads: every workflow type, and nothing that is not deterministic.
export { stackCheck } from './stack-check';
export { bulkRestore } from './bulk-restore';
export { tenantRestore } from './tenant-restore';
export { tenantGroupRestore } from './tenant-group-restore';
export { restoreDrill } from './restore-drill';
