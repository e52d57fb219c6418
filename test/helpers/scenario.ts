/**
 * The scenario most integration tests start from: tenants lost from live, and a backup that still has them.
 *
 *   source (generated tenants) → pg_dump -Fc archive in the stack's MinIO → live (a copy of source with the victims
 *   deleted) → a snapshot of the bystanders' rows in live, to show afterwards that the restore left them alone.
 */
import { useStackEnv } from './stack';
import { deleteTenants, generate, tenantRows, uploadBackup, type TenantShape } from '../fixtures/orchestration/fixture';

type Database = { name: string; url: string };
type Fresh = (prefix: string, template?: string) => Promise<Database>;

export interface LostTenantsOptions {
  /** `fresh` of the file's `useFreshDatabases()`: the databases are dropped with the file's, or kept when it fails. */
  fresh: Fresh;
  /** Prefix of the databases: `<name>_src` and `<name>_live`. */
  name: string;
  /** The object key of the backup in the stack's bucket. */
  backupKey: string;
  /** Tenants deleted from live after the backup: the ones to restore. */
  victims: number[];
  /** Tenants whose rows in live are snapshotted (`bystandersBefore`); none by default. */
  bystanders?: number[];
  /** The tenants of the source: one shape for tenants 1..`tenants`, or the generator's list of groups. */
  shape: TenantShape | Array<{ first: number; count: number; shape: TenantShape }>;
  /** With a single shape: how many tenants, from 1 (default: the highest victim or bystander). */
  tenants?: number;
  /** The generator's options (`minimal`: no optional tables). */
  generate?: { minimal?: boolean };
}

export interface LostTenants {
  source: Database;
  live: Database;
  /** The backup's URL (`s3://bucket/key`). */
  backup: string;
  bystandersBefore: Awaited<ReturnType<typeof tenantRows>>;
}

export async function lostTenants(options: LostTenantsOptions): Promise<LostTenants> {
  const env = useStackEnv();
  const { fresh, name, victims, bystanders = [] } = options;
  const groups = Array.isArray(options.shape)
    ? options.shape
    : [{ first: 1, count: options.tenants ?? Math.max(...victims, ...bystanders), shape: options.shape }];
  const source = await fresh(`${name}_src`);
  await generate(source.url, groups, options.generate);
  const { backup } = await uploadBackup(source.url, env.STACK_S3_BUCKET, options.backupKey);
  const live = await fresh(`${name}_live`, source.name);
  await deleteTenants(live.url, victims);
  const bystandersBefore = bystanders.length ? await tenantRows(live.url, bystanders) : {};
  return { source, live, backup, bystandersBefore };
}
