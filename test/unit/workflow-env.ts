/**
 * The Temporal test environment of the workflow unit tests: the project's own Temporal binary (createLocal; the
 * time-skipping server is a Java binary this network does not reach) with the restore's search attributes.
 */
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  RestoreIdKey,
  RestoreKindKey,
  RestorePhaseKey,
  TenantIdKey,
  TenantsFailedKey,
  TenantsRestoredKey,
  TenantsTotalKey,
} from '../../workflows/definitions';

const temporalBinary = join(__dirname, '..', '..', '.tools', 'bin', 'temporal');

export async function createWorkflowTestEnvironment(): Promise<TestWorkflowEnvironment> {
  if (!existsSync(temporalBinary))
    throw new Error(`${temporalBinary} is missing: run \`npm run stack up\` once to build it.`);
  // Only errors from the SDK: the activity failures these tests provoke on purpose are logged as warnings.
  Runtime.install({ logger: new DefaultLogger((process.env.TEST_SDK_LOG_LEVEL as 'WARN' | undefined) ?? 'ERROR') });
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: temporalBinary },
      searchAttributes: [
        RestoreIdKey,
        RestorePhaseKey,
        RestoreKindKey,
        TenantIdKey,
        TenantsTotalKey,
        TenantsRestoredKey,
        TenantsFailedKey,
      ],
    },
  });
}
