/**
 * The parent's side of approval: which tenants the operator approved (all, or a list), and forwarding each approval
 * to the units that hold those tenants. The units run held actions in waves as their tenants are approved
 * (workflows/restore-unit.ts).
 */
import { getExternalWorkflowHandle, log, setHandler } from '@temporalio/workflow';
import type { TenantId } from '../activities/restore-types';
import {
  approveSignal,
  approveTenantSignal,
  approveUnitTenantsSignal,
  normalizeTenantId,
  tenantWorkflowId,
  type BulkRestoreState,
} from './definitions';

export class Approvals {
  private readonly approved: Set<TenantId>;

  constructor(
    private readonly restoreId: string,
    private readonly state: Pick<BulkRestoreState, 'approvedAll' | 'approvedTenants' | 'running' | 'groupOf' | 'plan'>,
  ) {
    this.approved = new Set(state.approvedTenants);
  }

  isApproved(tenantId: TenantId): boolean {
    return this.state.approvedAll || this.approved.has(tenantId);
  }

  /** `approve`: running units learn it now; units started later get it in their input. */
  register(): void {
    setHandler(approveSignal, async ({ tenantIds }) => {
      if (!tenantIds) this.state.approvedAll = true;
      else for (const id of tenantIds) this.approved.add(normalizeTenantId(id, this.state.plan?.rootKeyType));
      const targets = Object.keys(this.state.running).filter((id) => this.isApproved(id));
      const groupOf = this.state.groupOf ?? {};
      const units = new Map<string, TenantId[]>();
      for (const id of targets) if (groupOf[id]) units.set(groupOf[id], [...(units.get(groupOf[id]) ?? []), id]);
      await Promise.all(
        [...units].map(([workflowId, ids]) =>
          this.send(workflowId, () =>
            getExternalWorkflowHandle(workflowId).signal(approveUnitTenantsSignal, { tenantIds: ids }),
          ),
        ),
      );
      // Per-tenant children of the previous release are approved by their own id.
      await Promise.all(
        targets
          .filter((id) => !groupOf[id])
          .map((id) => {
            const workflowId = tenantWorkflowId(this.restoreId, id);
            return this.send(workflowId, () => getExternalWorkflowHandle(workflowId).signal(approveTenantSignal));
          }),
      );
    });
  }

  /** Approvals that came before the plan knew the root key's type: compared as the tenant pages will be. */
  normalize(rootKeyType: string | undefined): void {
    for (const id of [...this.approved]) {
      this.approved.delete(id);
      this.approved.add(normalizeTenantId(id, rootKeyType));
    }
  }

  /** Into the state a continue-as-new carries. */
  carry(): void {
    this.state.approvedTenants = [...this.approved];
  }

  private async send(workflowId: string, signal: () => Promise<void>): Promise<void> {
    try {
      await signal();
    } catch (error) {
      log.info('approval not delivered (unit already finished)', { workflowId, error: (error as Error).message });
    }
  }
}
