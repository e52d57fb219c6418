/** The worker's log redaction: secrets by key, and passwords inside URLs in any string, never reach a log line. */
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { logRedaction } from '../../workers/worker';

describe('worker log redaction', () => {
  it('censors secret keys and passwords in URLs, and keeps the rest', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = pino({ level: 'info', ...logRedaction }, sink);
    logger.info(
      {
        password: 'hunter2',
        webhook: { headers: { authorization: 'Bearer abc' }, token: 'tok-1' },
        live: 'postgres://tenant_restore:s3cr3t@db.internal:5432/prod',
        error: 'connect failed: https://svc:p%40ss@billing.internal/enable',
        tenantId: '42',
      },
      'something happened',
    );
    const line = lines.join('');
    for (const secret of ['hunter2', 'Bearer abc', 'tok-1', 's3cr3t', 'p%40ss']) expect(line).not.toContain(secret);
    const parsed = JSON.parse(line) as Record<string, unknown>;
    expect(parsed.password).toBe('[redacted]');
    expect(parsed.live).toBe('postgres://tenant_restore:[redacted]@db.internal:5432/prod');
    expect(parsed.error).toBe('connect failed: https://svc:[redacted]@billing.internal/enable');
    expect(parsed.tenantId).toBe('42');
  });
});
