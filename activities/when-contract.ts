/**
 * `tenant-restore when`'s workflow input and result (workflows/when.ts, activities/when.ts): the schema is built from
 * the input contract's pieces (activities/input-contract/) and parsed by the command line before it starts anything,
 * by the workflow at its first step and by the activity. Workflow code imports this module: zod and types only.
 */
import { z } from 'zod';
import {
  databaseName,
  databaseRef,
  operationId,
  qualifiedName,
  recoveryTarget,
  stanzaName,
  tenantId,
} from './input-contract';
import type { RecoveryTarget } from './restore-types';

/** At most this many tenants per `when`: each is a position followed through every heap record of the root. */
export const whenMaxTenants = 10_000;

export const whenInput = z.strictObject({
  whenId: operationId('a when id'),
  stanza: stanzaName,
  /** The database of the recovered cluster to read; default: live's name. */
  database: databaseName.optional(),
  live: databaseRef,
  tenantRoot: qualifiedName,
  tenants: z.array(tenantId).min(1).max(whenMaxTenants),
  /** Where the WAL is read from; default: the end of the oldest backup of the stanza. */
  since: recoveryTarget.optional(),
});
export type WhenInput = z.infer<typeof whenInput>;

/** The activity's own input: the workflow's, with the moment the scratch was recovered to. */
export const findRootDeletionsInput = z.strictObject({
  whenId: operationId('a when id'),
  stanza: stanzaName,
  database: databaseName,
  tenantRoot: qualifiedName,
  tenants: z.array(tenantId).min(1).max(whenMaxTenants),
  since: recoveryTarget,
});
export type FindRootDeletionsInput = z.infer<typeof findRootDeletionsInput>;

export const whenWorkflowId = (whenId: string): string => `when/${whenId}`;

export type WhenTenant =
  | {
      tenantId: string;
      /** The top-level transaction id (32 bits: txid_current() modulo 2^32). */
      deletedBy: number;
      commitTime: string;
      commitLsn: string;
      /** The first WAL record of the deleting transaction. */
      firstLsn: string;
    }
  | { tenantId: string; notDeleted: true };

/** What `when` found: small, JSON. */
export interface WhenResult {
  whenId: string;
  stanza: string;
  database: string;
  tenantRoot: string;
  /** Where the WAL was read from: the moment the scratch was recovered to, and the position replay stopped at. */
  since: { target: string; isDefault: boolean; recovery?: string; walFrom: string };
  tenants: WhenTenant[];
  /** The first deleting transaction (by first record), and the last (by commit). Absent when none was deleted. */
  first?: { xid: number; firstLsn: string; commitTime: string };
  last?: { xid: number; commitLsn: string; commitTime: string };
  /** T0 and T1 in the `--at` grammar: `discover --from <from> --to <to>`. */
  window?: { from: string; to: string };
  /** What the stanza can recover, and where reading the archive ended. */
  archive: {
    from?: { time: string; lsn: string; backup: string };
    to?: { walSegment: string; lastCommit?: string };
    readTo?: string;
    walSegments: number;
  };
  warnings: string[];
}

/** The activity's result: the workflow adds nothing but the input's echo. */
export type RootDeletions = Omit<WhenResult, 'whenId' | 'stanza' | 'tenantRoot' | 'since'> & {
  walFrom: string;
};

export const describeMoment = (target: RecoveryTarget): string => (target.type === 'time' ? target.time : target.lsn);
