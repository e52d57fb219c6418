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
  approveUpdate,
  approveUnitTenantsSignal,
  normalizeTenantId,
  tenantWorkflowId,
  type ApproveAck,
  type BulkRestoreInput,
  type BulkRestoreState,
} from './definitions';

export class Approvals {
  private readonly approved: Set<TenantId>;

  constructor(
    private readonly restoreId: string,
    private readonly state: Pick<
      BulkRestoreState,
      'approvedAll' | 'approvedTenants' | 'running' | 'groupOf' | 'plan' | 'cancelRequested'
    >,
  ) {
    this.approved = new Set(state.approvedTenants);
  }

  isApproved(tenantId: TenantId): boolean {
    return this.state.approvedAll || this.approved.has(tenantId);
  }

  /**
   * `approve`, as a signal (earlier releases' CLI) and as an update. Running units learn it now; units started later
   * get it in their input. The update's validator refuses what would be accepted and ignored: a restore whose actions
   * hold nothing for approval, tenants that are not in its list (checked while the list is in the input: the first
   * run of a restore of up to a page of tenants; the CLI checks the list in S3 itself), a restore being cancelled.
   */
  register(input: Pick<BulkRestoreInput, 'restoreId' | 'tenants' | 'config'>): void {
    setHandler(approveSignal, async ({ tenantIds }) => {
      await this.approve(tenantIds);
    });
    setHandler(
      approveUpdate,
      async ({ tenantIds }): Promise<ApproveAck> => {
        const { targets, atGate } = await this.approve(tenantIds);
        return {
          restoreId: this.restoreId,
          approved: tenantIds ?? 'all',
          releasedNow: atGate,
          runningBeforeGate: targets.length - atGate,
        };
      },
      { validator: ({ tenantIds }) => this.check(input, tenantIds) },
    );
  }

  private check(input: Pick<BulkRestoreInput, 'restoreId' | 'tenants' | 'config'>, tenantIds?: TenantId[]): void {
    const held = (input.config?.actions ?? []).filter((a) => a.requiresApproval).map((a) => a.name);
    if (held.length === 0)
      throw new Error(
        `no re-enable action of restore ${input.restoreId} requires approval (none has requiresApproval in its config): nothing to approve.`,
      );
    if (this.state.cancelRequested)
      throw new Error(`restore ${input.restoreId} is being cancelled: nothing to approve.`);
    if (tenantIds && input.tenants) {
      const keyType = this.state.plan?.rootKeyType;
      const listed = new Set(input.tenants.map((id) => normalizeTenantId(id, keyType)));
      const outside = tenantIds.filter((id) => !listed.has(normalizeTenantId(id, keyType)));
      if (outside.length)
        throw new Error(
          `tenant(s) ${outside.join(', ')} are not in restore ${input.restoreId} (${input.tenants.length} tenants): nothing was approved.`,
        );
    }
  }

  /**
   * Records the approval and forwards it to the running units; returns the running tenants it concerns, and how many
   * of them were waiting at the gate when it came.
   */
  private async approve(tenantIds: TenantId[] | undefined): Promise<{ targets: TenantId[]; atGate: number }> {
    if (!tenantIds) this.state.approvedAll = true;
    else for (const id of tenantIds) this.approved.add(normalizeTenantId(id, this.state.plan?.rootKeyType));
    const targets = Object.keys(this.state.running).filter((id) => this.isApproved(id));
    const atGate = targets.filter((id) => this.state.running[id] === 'awaiting-approval').length;
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
    // A running tenant with no unit in groupOf (runs recorded before every unit of one was listed there; their
    // histories replay) is approved by its own workflow id, as those runs did.
    await Promise.all(
      targets
        .filter((id) => !groupOf[id])
        .map((id) => {
          const workflowId = tenantWorkflowId(this.restoreId, id);
          return this.send(workflowId, () => getExternalWorkflowHandle(workflowId).signal(approveTenantSignal));
        }),
    );
    return { targets, atGate };
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
