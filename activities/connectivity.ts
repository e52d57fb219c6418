import type { Pools, DatabaseRef } from './db';

/** Answers which PostgreSQL server a database reference reaches; used by the stack check and `tenant-restore doctor`. */
export function createConnectivityActivities({ pools }: { pools: Pools }) {
  return {
    async checkDatabase(ref: DatabaseRef): Promise<{ database: string; serverVersion: string }> {
      const { rows } = await pools
        .get(ref)
        .query<{ database: string; version: string }>(
          'SELECT current_database() AS database, current_setting($1) AS version',
          ['server_version'],
        );
      return { database: rows[0].database, serverVersion: rows[0].version };
    },
  };
}
