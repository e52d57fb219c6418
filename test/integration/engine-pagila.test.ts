/**
 * Pagila with tenant root public.store: stores 1 and 2 and their downward closure (staff, customers, inventory,
 * rentals, and payments in a partitioned table whose FKs sit on the partitions) are hard-deleted from live, then
 * restored from scratch. Every table, every partition included, must be byte-for-byte what it was before the
 * deletion: in particular last_update (the last_updated triggers must not touch restored rows) and film.fulltext.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyTenant } from '../../activities/copy';
import { Pools } from '../../activities/db';
import { buildPlan, type Plan } from '../../activities/plan';
import { preflightTenant } from '../../activities/preflight';
import { validateTenant } from '../../activities/validate';
import { destructiveStatements, installDeleteAudit } from '../helpers/audit';
import { fingerprints, psqlFile, query, userTables } from '../helpers/engine';
import { useFreshDatabases, useStackEnv } from '../helpers/stack';

useStackEnv();
const { fresh } = useFreshDatabases();
const pagila = '/work/shared/fixtures/pagila';

// The downward closure of stores 1 and 2, children first: what a wrong script run would delete.
const deleteStores = `
  CREATE TEMP TABLE gone_customer AS SELECT customer_id FROM customer WHERE store_id IN (1, 2);
  CREATE TEMP TABLE gone_staff AS SELECT staff_id FROM staff WHERE store_id IN (1, 2);
  CREATE TEMP TABLE gone_inventory AS SELECT inventory_id FROM inventory WHERE store_id IN (1, 2);
  CREATE TEMP TABLE gone_rental AS SELECT rental_id FROM rental WHERE customer_id IN (SELECT * FROM gone_customer)
    OR staff_id IN (SELECT * FROM gone_staff) OR inventory_id IN (SELECT * FROM gone_inventory);
  DELETE FROM payment WHERE customer_id IN (SELECT * FROM gone_customer) OR staff_id IN (SELECT * FROM gone_staff) OR rental_id IN (SELECT * FROM gone_rental);
  DELETE FROM rental WHERE rental_id IN (SELECT * FROM gone_rental);
  DELETE FROM customer WHERE customer_id IN (SELECT * FROM gone_customer);
  DELETE FROM inventory WHERE inventory_id IN (SELECT * FROM gone_inventory);
  DELETE FROM staff WHERE staff_id IN (SELECT * FROM gone_staff);
  DELETE FROM store WHERE store_id IN (1, 2);`;

describe('Pagila: restore stores 1 and 2', () => {
  const pools = new Pools();
  let source: { name: string; url: string };
  let scratchUrl: string;
  let liveUrl: string;
  let plan: Plan;
  let tables: string[];
  let before: Record<string, string>;

  beforeAll(async () => {
    source = await fresh('pagila_src');
    psqlFile(source.url, join(pagila, 'pagila-schema.sql'));
    psqlFile(source.url, join(pagila, 'pagila-data.sql'));
    scratchUrl = (await fresh('pagila_scratch', source.name)).url;
    liveUrl = (await fresh('pagila_live', source.name)).url;
    tables = await userTables(liveUrl);
    before = await fingerprints(liveUrl, tables);
    await query(liveUrl, deleteStores);
    await installDeleteAudit(liveUrl, 'all');
  });
  afterAll(() => pools.closeAll());

  it('plans the store closure with partitions read through their parent', async () => {
    plan = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'public.store',
      tenantIds: ['1', '2'],
    });
    const byKey = Object.fromEntries(plan.tables.map((t) => [t.key, t]));
    expect(plan.tables.map((t) => t.key).filter((k) => byKey[k]!.role !== 'shared')).toEqual([
      'public.store',
      'public.customer',
      'public.inventory',
      'public.staff',
      'public.rental',
      'public.payment',
    ]);
    // No partition is a table of the plan; payment's FKs (declared per partition) are lifted to the parent.
    expect(plan.tables.some((t) => t.key.startsWith('public.payment_p'))).toBe(false);
    expect(byKey['public.payment']!.paths.map((p) => p.map((s) => s.to).join('>')).sort()).toEqual([
      'public.customer>public.store',
      'public.rental>public.customer>public.store',
      'public.rental>public.inventory>public.store',
      'public.rental>public.staff>public.store',
      'public.staff>public.store',
    ]);
    for (const shared of ['public.address', 'public.city', 'public.country', 'public.film', 'public.language'])
      expect(byKey[shared]?.role).toBe('shared');
    const order = plan.tables.map((t) => t.key);
    expect(order.indexOf('public.address')).toBeLessThan(order.indexOf('public.store'));
    expect(order.indexOf('public.rental')).toBeLessThan(order.indexOf('public.payment'));
    expect(byKey['public.payment']!.estimatedRows).toBe(
      Number((await query(scratchUrl, 'SELECT count(*) AS n FROM payment'))[0]!.n),
    );
    expect(byKey['public.film']!.userTriggers).toContain('film_fulltext_trigger');
    expect(plan.fkEnforcement).toBe('replica');
    // Deterministic: a second plan has the same digest (estimates aside).
    const again = await buildPlan({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      tenantRoot: 'public.store',
    });
    expect(again.digest).toBe(plan.digest);
  });

  it('preflight sees both stores absent in live and no conflicts', async () => {
    for (const id of ['1', '2']) {
      const p = await preflightTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantId: id,
        conflict: 'fail',
      });
      expect(p.liveState).toBe('absent');
      expect(p.rowsInBackup['public.store']).toBe(1);
      expect(Object.values(p.conflicts).every((n) => n === 0)).toBe(true);
    }
  });

  it('restores both stores byte for byte, without DELETE or TRUNCATE, and validates', async () => {
    const result = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['1', '2'],
      conflict: 'fail',
    });
    expect(result.chunked).toBe(false);
    expect(result.rows['public.payment']).toBe(plan.tables.find((t) => t.key === 'public.payment')!.estimatedRows);
    // The shared parents were never deleted, so the parent closure is empty.
    expect(result.parentClosure).toEqual([]);
    expect(await destructiveStatements(liveUrl)).toEqual([]);

    const after = await fingerprints(liveUrl, tables);
    expect(after).toEqual(before);

    for (const id of ['1', '2']) {
      const v = await validateTenant({
        scratch: pools.get(scratchUrl),
        live: pools.get(liveUrl),
        plan,
        tenantId: id,
        conflict: 'fail',
      });
      expect(v.orphans).toEqual([]);
      expect(v.tables.filter((t) => !t.match)).toEqual([]);
      expect(v.ok).toBe(true);
    }
  });

  it('a rerun converges: overwrite rewrites nothing and last_update stays (triggers suspended), skip adds nothing', async () => {
    const overwrite = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['1', '2'],
      conflict: 'overwrite',
    });
    expect(Object.values(overwrite.rows).every((n) => n === 0)).toBe(true);
    const skip = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['1', '2'],
      conflict: 'skip',
    });
    expect(Object.values(skip.rows).every((n) => n === 0)).toBe(true);
    expect(await fingerprints(liveUrl, tables)).toEqual(before);
  });

  it('overwrite takes the backup row back without the last_updated trigger rewriting it', async () => {
    await query(liveUrl, `UPDATE customer SET first_name = 'CHANGED' WHERE customer_id IN (1, 2)`);
    expect(await fingerprints(liveUrl, ['public.customer'])).not.toEqual({
      'public.customer': before['public.customer'],
    });
    const result = await copyTenant({
      scratch: pools.get(scratchUrl),
      live: pools.get(liveUrl),
      plan,
      tenantIds: ['1', '2'],
      conflict: 'overwrite',
    });
    expect(result.rows['public.customer']).toBe(2);
    expect(await fingerprints(liveUrl, tables)).toEqual(before);
    expect(await destructiveStatements(liveUrl)).toEqual([]);
  });
});
