/**
 * Which tenants of a unit may be restored, from its preflight: pure, deterministic, used by every restore unit (and
 * unit-tested on its own).
 *
 * - absent tenants go on with the unit;
 * - partial tenants go on only when the operator opted in (`allowPartial`), each as a unit of its own that inserts only
 *   the missing rows (policy skip, whatever --conflict says: an existing row is never updated);
 * - present tenants, and partial ones without the opt-in, are refused before anything of theirs is written
 *   (TenantPresentError), and the other tenants go on.
 * `admitted` lists tenants this restore's own copy wrote, on evidence (a copy of their unit that completed, or that
 * failed for good after a commit, e.g. a group that failed validation and is split): they are not refused again, since
 * the rows found in live are this restore's. Nothing else admits a tenant: a unit reshaped after preflight wrote nothing,
 * so its tenants are classified again, and a tenant found absent is checked again under the tenant lock in any case
 * (restore-unit.ts `expectAbsent`), so that a second restore of a tenant never writes over the first (I7).
 */
import type { PreflightResult, TenantClassification, TenantId } from '../activities/restore-types';

export interface Refusal {
  tenantId: TenantId;
  /** The error type the tenant fails with (default TenantPresentError). */
  type?: 'WindowConflict' | 'NotInWindow';
  state: 'present' | 'partial';
  missing: Record<string, number>;
  message: string;
}

export interface Admission {
  /** Absent tenants (or already admitted): restored as the unit. */
  absent: TenantId[];
  /** Partial tenants the operator allowed: each restored alone, missing rows only. */
  partial: TenantId[];
  refused: Refusal[];
}

/**
 * An incident window's revert (activities/window.ts): scratch holds exactly what the window deleted or changed, so a
 * tenant whose root is still in live goes on like an allowed partial tenant (alone, its missing rows inserted, its
 * changed rows set back). A tenant the window did not touch is refused, and so is one with conflicts unless the
 * operator said `--conflicts report`.
 */
export interface WindowAdmission {
  touched: TenantId[];
  conflicted: TenantId[];
  refuseConflicts: boolean;
}

export function admitTenants(
  preflight: PreflightResult,
  ids: TenantId[],
  options: { allowPartial?: boolean; admitted?: TenantId[]; window?: WindowAdmission },
): Admission {
  const admission: Admission = { absent: [], partial: [], refused: [] };
  const admitted = new Set(options.admitted ?? []);
  const { window } = options;
  for (const id of ids) {
    // A result of an earlier release carries no per-tenant states: it was restored as it was then (absent).
    const found: TenantClassification = preflight.tenants?.[id] ?? { state: 'absent' };
    const windowRefusal = window && !admitted.has(id) ? refuseInWindow(id, window) : undefined;
    if (windowRefusal)
      admission.refused.push({
        tenantId: id,
        state: found.state === 'absent' ? 'present' : found.state,
        missing: {},
        ...windowRefusal,
      });
    else if (found.state === 'absent' || admitted.has(id)) admission.absent.push(id);
    else if (window) admission.partial.push(id);
    else if (found.state === 'partial' && options.allowPartial) admission.partial.push(id);
    else
      admission.refused.push({
        tenantId: id,
        state: found.state,
        missing: found.missing ?? {},
        message: refusalMessage(id, found),
      });
  }
  return admission;
}

function refuseInWindow(id: TenantId, window: WindowAdmission): Pick<Refusal, 'type' | 'message'> | undefined {
  if (!window.touched.includes(id))
    return {
      type: 'NotInWindow',
      message: `Tenant ${id}: the incident window deleted and changed nothing of it (no row of it differs between T0 and T1). Nothing of it was written. Check the tenant list, or the window's --from and --to (tenant-restore when finds them).`,
    };
  if (window.refuseConflicts && window.conflicted.includes(id))
    return {
      type: 'WindowConflict',
      message: `Tenant ${id}: rows the incident deleted or changed were changed again since (listed in the restore's window.json). Nothing of it was written. Read them; to restore everything else of it and leave those rows as they are, start again with --conflicts report.`,
    };
  return undefined;
}

/** True when the unit cannot go on as it is: some tenants are refused, or partial ones must go alone. */
export function mustReshape(admission: Admission, unitIsPartial: boolean): boolean {
  return admission.refused.length > 0 || (!unitIsPartial && admission.partial.length > 0);
}

function refusalMessage(id: TenantId, found: TenantClassification): string {
  const missing = Object.entries(found.missing ?? {});
  if (found.state === 'present') {
    return (
      `Tenant ${id} is present in live: its root row exists and no row of the backup is missing, so it was not deleted. ` +
      `Nothing of it was written. Restoring it would bring back rows its users deleted since the backup, or revert their newer values: ` +
      `remove it from the tenant list.`
    );
  }
  const total = missing.reduce((sum, [, n]) => sum + n, 0);
  return (
    `Tenant ${id} is partial in live: its root row exists, but ${total} row(s) of the backup are missing ` +
    `(${missing.map(([table, n]) => `${table}: ${n}`).join(', ')}). Nothing of it was written. ` +
    `To insert only its missing rows (never an update of an existing row), restore it again with --allow-partial; ` +
    `rows its users deleted on purpose since the backup come back too. With a WAL archive, an incident window ` +
    `(--backup pgbackrest:<stanza> --from <T0> --to <T1>) brings back only what the incident deleted.`
  );
}
