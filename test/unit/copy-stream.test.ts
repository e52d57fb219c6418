/**
 * What the direct copy paths read off a COPY text stream in Node (activities/copy/direct.ts, chunked-direct.ts), with no
 * database: the fields of a row (`lineFields`), a row with some fields set to NULL (`withNullFields`), a value as it was
 * before COPY escaped it (`unescapeCopyText`), the tap that sees every row of a stream cut anywhere (`RowTap`: inside a
 * multi-byte UTF-8 character, right after a backslash, between `\r` and `\n`), how a key column's text sorts as
 * PostgreSQL sorts it (`keyOrder`), and which tables may take a direct COPY (`directEligible`).
 *
 * The COPY text format as PostgreSQL writes it (CopyAttributeOutText): a backslash is doubled; backspace, form feed,
 * newline, carriage return, tab and vertical tab become `\b \f \n \r \t \v`; every other character, control characters
 * and multi-byte UTF-8 included, goes out as it is; NULL is `\N`, so the value `\N` goes out as `\\N`.
 */
import fc from 'fast-check';
import { randomUUID } from 'node:crypto';
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { keyOrder } from '../../activities/copy/chunked-direct';
import { directEligible, lineFields, RowTap, unescapeCopyText, withNullFields } from '../../activities/copy/direct';
import type { PlanTable } from '../../activities/plan';

/** A value as PostgreSQL's COPY TO writes it in text format (written here from the format's rules, not the product). */
function copyEscape(value: string | null): string {
  if (value === null) return '\\N';
  const letters: Record<string, string> = { '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v' };
  let out = '';
  for (const c of value) out += c === '\\' ? '\\\\' : letters[c] !== undefined ? `\\${letters[c]}` : c;
  return out;
}

const copyLine = (row: Array<string | null>) => `${row.map(copyEscape).join('\t')}\n`;

/** One character of a value: the characters COPY escapes, backslash and N (for `\N`), anything else of Unicode. */
const valueUnit = fc.oneof(
  fc.constantFrom('\\', '\b', '\f', '\n', '\r', '\t', '\v', 'N', 'n', 't', '.', '\x01', '\x7f', 'ü', '€', '😀'),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
);

/** Feeds `chunks` through a RowTap of `fields`; the rows it saw, and the bytes it let through. */
async function tapAll(
  chunks: Buffer[],
  fields: number[],
): Promise<{ rows: Array<Array<string | null>>; passed: Buffer }> {
  const rows: Array<Array<string | null>> = [];
  const out: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out.push(chunk);
      done();
    },
  });
  await pipeline(Readable.from(chunks), new RowTap(fields, (values) => rows.push(values)), sink);
  return { rows, passed: Buffer.concat(out) };
}

/** `bytes` cut at the given offsets (ascending, inside the buffer). */
function cutAt(bytes: Buffer, offsets: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let from = 0;
  for (const at of offsets) {
    chunks.push(bytes.subarray(from, at));
    from = at;
  }
  chunks.push(bytes.subarray(from));
  return chunks;
}

describe('lineFields', () => {
  it('reads the wanted fields of one row of a buffer, escaped, with \\N as null and \\\\N as text', () => {
    const text = 'zero\\tone\t\\N\ttwo\\\\N\t\\\\\tlast\\nline\n';
    const buffer = Buffer.from(`garbage\tbefore\n${text}next\trow\n`);
    const start = buffer.indexOf('zero');
    const end = buffer.indexOf(10, start);
    expect(lineFields(buffer, start, end, [0, 1, 2, 3, 4])).toEqual([
      'zero\\tone',
      null,
      'two\\\\N',
      '\\\\',
      'last\\nline',
    ]);
    expect(lineFields(buffer, start, end, [1, 4])).toEqual([null, 'last\\nline']);
    expect(lineFields(buffer, start, end, [3])).toEqual(['\\\\']);
    // The value `\N` (escaped `\\N`) read back is the text, not NULL.
    expect(unescapeCopyText(lineFields(buffer, start, end, [2])[0]!)).toBe('two\\N');
  });

  it('reads empty values as empty strings, not null, and multi-byte text whole', () => {
    const buffer = Buffer.from('\t\tü€😀\t\n');
    expect(lineFields(buffer, 0, buffer.length - 1, [0, 1, 2, 3])).toEqual(['', '', 'ü€😀', '']);
  });

  it('refuses a row with fewer fields than wanted, even when the next row has more', () => {
    const buffer = Buffer.from('a\tb\nc\td\te\tf\n');
    const end = buffer.indexOf(10);
    expect(() => lineFields(buffer, 0, end, [2])).toThrow(/fewer fields/);
    expect(() => lineFields(buffer, 0, end, [3])).toThrow(/fewer fields/);
    // The field right after the last one: not an empty value read off the next row's bytes.
    expect(() => lineFields(buffer, 0, end, [1, 2])).toThrow(/fewer fields/);
    expect(() => lineFields(buffer, 0, end, [0, 1, 2])).toThrow(/fewer fields/);
  });
});

describe('withNullFields', () => {
  it('sets the given fields to \\N and keeps every other byte', () => {
    const line = Buffer.from('1\tp\\tq\t\\\\N\tü€\t\n');
    expect(withNullFields(line, [1]).toString()).toBe('1\t\\N\t\\\\N\tü€\t\n');
    expect(withNullFields(line, [0, 2]).toString()).toBe('\\N\tp\\tq\t\\N\tü€\t\n');
    expect(withNullFields(line, [3]).toString()).toBe('1\tp\\tq\t\\\\N\t\\N\t\n');
    // The last field, empty, and the last field with a value.
    expect(withNullFields(line, [4]).toString()).toBe('1\tp\\tq\t\\\\N\tü€\t\\N\n');
    expect(withNullFields(Buffer.from('a\tb\n'), [1]).toString()).toBe('a\t\\N\n');
    expect(withNullFields(line, []).toString()).toBe(line.toString());
  });

  it('refuses a field past the row rather than overwrite another one', () => {
    expect(() => withNullFields(Buffer.from('a\tb\n'), [2])).toThrow(/fewer fields/);
    expect(() => withNullFields(Buffer.from('a\tb\n'), [0, 3])).toThrow(/fewer fields/);
  });

  it('agrees with lineFields: the nulled fields read null, the others as before', () => {
    fc.assert(
      fc.property(
        fc.array(fc.option(fc.string({ unit: valueUnit }), { nil: null }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        (row, picks) => {
          const nulled = [...new Set(picks.map((p) => p % row.length))].sort((a, b) => a - b);
          const line = Buffer.from(copyLine(row));
          const out = withNullFields(line, nulled);
          const all = row.map((_, i) => i);
          const before = lineFields(line, 0, line.length - 1, all);
          const after = lineFields(out, 0, out.length - 1, all);
          expect(after).toEqual(before.map((v, i) => (nulled.includes(i) ? null : v)));
          expect(out[out.length - 1]).toBe(10);
        },
      ),
    );
  });
});

describe('unescapeCopyText', () => {
  it('undoes each of COPY text escapes, and leaves text without a backslash as it is', () => {
    expect(unescapeCopyText('a\\tb\\nc\\rd\\be\\ff\\vg')).toBe('a\tb\nc\rd\be\ff\vg');
    expect(unescapeCopyText('\\\\N')).toBe('\\N');
    expect(unescapeCopyText('\\\\\\\\')).toBe('\\\\');
    expect(unescapeCopyText('\\\\n')).toBe('\\n');
    expect(unescapeCopyText('plain ü€😀')).toBe('plain ü€😀');
    expect(unescapeCopyText('')).toBe('');
  });

  it('round trip: unescape(escape(s)) is s', () => {
    fc.assert(
      fc.property(fc.string({ unit: valueUnit }), (s) => {
        expect(unescapeCopyText(copyEscape(s))).toBe(s);
      }),
    );
  });
});

describe('RowTap', () => {
  const rows: Array<Array<string | null>> = [
    ['1', 'tab\there', null, 'back\\slash'],
    ['2', 'new\nline', '\\N', 'ü€😀'],
    ['3', '', 'cr\r\nlf', '\\'],
    ['4', '\\t is not a tab', 'x', null],
  ];
  const bytes = Buffer.from(rows.map(copyLine).join(''));
  const expected = (fields: number[]) => rows.map((r) => fields.map((f) => (r[f] === null ? null : copyEscape(r[f]!))));

  it('sees every row whole wherever the stream is cut, and lets the bytes through unchanged', async () => {
    // Every cut in two, so every multi-byte character is split once and every backslash ends a chunk once.
    const multiByte = bytes.indexOf(Buffer.from('€')) + 1;
    const afterBackslash = bytes.indexOf(Buffer.from('\\')) + 1;
    expect(bytes[multiByte]).toBeGreaterThanOrEqual(0x80);
    expect(bytes[afterBackslash - 1]).toBe(0x5c);
    for (let at = 0; at <= bytes.length; at++) {
      const { rows: seen, passed } = await tapAll(cutAt(bytes, [at]), [0, 1, 2, 3]);
      expect(seen, `cut at byte ${at}`).toEqual(expected([0, 1, 2, 3]));
      expect(passed.equals(bytes)).toBe(true);
    }
    // One byte per chunk, and a subset of the fields.
    const single = cutAt(
      bytes,
      Array.from({ length: bytes.length - 1 }, (_, i) => i + 1),
    );
    expect((await tapAll(single, [1, 3])).rows).toEqual(expected([1, 3]));
    expect((await tapAll(single, [2])).rows).toEqual(expected([2]));
  });

  it('reads values that unescape to the original text, with NULL apart from the text \\N', async () => {
    const { rows: seen } = await tapAll([bytes], [0, 1, 2, 3]);
    expect(seen.map((r) => r.map((v) => (v === null ? null : unescapeCopyText(v))))).toEqual(rows);
    expect(seen[0]![2]).toBeNull();
    expect(seen[1]![2]).toBe('\\\\N');
  });

  it('fails a stream that ends inside a row', async () => {
    await expect(tapAll([Buffer.from('1\tx\n2\ty')], [0])).rejects.toThrow(/ended inside a row/);
    await expect(tapAll([Buffer.from('1\tx\n'), Buffer.from('2')], [1])).rejects.toThrow(/ended inside a row/);
  });

  it('fails the stream when a row has fewer fields than wanted', async () => {
    await expect(tapAll([Buffer.from('1\tx\n2\n')], [1])).rejects.toThrow(/fewer fields/);
  });

  it('passes an empty stream with no row', async () => {
    expect(await tapAll([], [0])).toEqual({ rows: [], passed: Buffer.alloc(0) });
  });

  it('property: rows of any text, escaped as COPY does and cut anywhere, read back equal', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }).chain((width) =>
          fc.record({
            width: fc.constant(width),
            rows: fc.array(
              fc.array(fc.option(fc.string({ unit: valueUnit, maxLength: 12 }), { nil: null }), {
                minLength: width,
                maxLength: width,
              }),
              { maxLength: 8 },
            ),
            picks: fc.uniqueArray(fc.nat({ max: width - 1 }), { minLength: 1, maxLength: width }),
            cuts: fc.array(fc.nat(), { maxLength: 12 }),
          }),
        ),
        async ({ rows: generated, picks, cuts }) => {
          const fields = [...picks].sort((a, b) => a - b);
          const stream = Buffer.from(generated.map(copyLine).join(''));
          const offsets = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
          const { rows: seen, passed } = await tapAll(cutAt(stream, offsets), fields);
          expect(passed.equals(stream)).toBe(true);
          expect(seen.map((r) => r.map((v) => (v === null ? null : unescapeCopyText(v))))).toEqual(
            generated.map((r) => fields.map((f) => r[f]!)),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('handles backpressure: rows are seen in order when the reader is slow', async () => {
    const seen: string[] = [];
    const tap = new RowTap([0], ([v]) => seen.push(v!));
    const slow = new PassThrough({ highWaterMark: 1 });
    const drained = (async () => {
      for await (const _chunk of slow) await new Promise((r) => setImmediate(r));
    })();
    const lines = Array.from({ length: 200 }, (_, i) => `${i}\tv\n`).join('');
    await pipeline(Readable.from(cutAt(Buffer.from(lines), [7, 300, 301, 1000])), tap, slow);
    await drained;
    expect(seen).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
  });
});

describe('keyOrder', () => {
  it('orders integer keys as numbers: negatives, different lengths, beyond 2^53', () => {
    for (const type of ['smallint', 'integer', 'bigint']) {
      const order = keyOrder(type)!;
      expect(order('-5', '3')).toBeLessThan(0);
      expect(order('10', '9')).toBeGreaterThan(0);
      expect(order('-10', '-9')).toBeLessThan(0);
      expect(order('42', '42')).toBe(0);
    }
    const order = keyOrder('bigint')!;
    // Equal as JavaScript numbers, different as bigint.
    expect(Number('9007199254740993')).toBe(Number('9007199254740992'));
    expect(order('9007199254740993', '9007199254740992')).toBeGreaterThan(0);
    expect(order('-9223372036854775808', '9223372036854775807')).toBeLessThan(0);
    expect(order('9223372036854775807', '9223372036854775806')).toBeGreaterThan(0);
  });

  it('sorts integers as BigInt does', () => {
    const order = keyOrder('bigint')!;
    fc.assert(
      fc.property(fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })), (values) => {
        const texts = values.map(String);
        const sorted = [...values].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map(String);
        expect([...texts].sort(order)).toEqual(sorted);
      }),
    );
  });

  it("orders uuids as PostgreSQL does: by their 16 bytes (uuid_out's lowercase hex)", () => {
    const order = keyOrder('uuid')!;
    const bytes = (u: string) => Buffer.from(u.replace(/-/g, ''), 'hex');
    const uuids = [
      ...Array.from({ length: 200 }, () => randomUUID()),
      '00000000-0000-0000-0000-000000000000',
      'ffffffff-ffff-ffff-ffff-ffffffffffff',
      '0fffffff-ffff-ffff-ffff-ffffffffffff',
      'f0000000-0000-0000-0000-000000000000',
      '9fffffff-0000-0000-0000-000000000000',
      'a0000000-0000-0000-0000-000000000000',
    ];
    expect([...uuids].sort(order)).toEqual([...uuids].sort((a, b) => Buffer.compare(bytes(a), bytes(b))));
    expect(order('9fffffff-0000-0000-0000-000000000000', 'a0000000-0000-0000-0000-000000000000')).toBeLessThan(0);
    expect(order(uuids[0]!, uuids[0]!)).toBe(0);
  });

  it('knows no order for other types: their keys go in NULL, never compared in Node', () => {
    for (const type of ['text', 'numeric', 'character varying(20)', 'bigint[]', 'int8', 'public.uuid', 'date'])
      expect(keyOrder(type), type).toBeUndefined();
  });
});

describe('directEligible', () => {
  const table = (over: Partial<PlanTable>): PlanTable =>
    ({
      key: 'app.t',
      schema: 'app',
      name: 't',
      role: 'owned',
      columns: [
        { name: 'id', type: 'bigint' },
        { name: 'parent_id', type: 'bigint' },
      ],
      primaryKey: ['id'],
      uniqueKeys: [['id']],
      overridingSystemValue: false,
      sequences: [],
      paths: [],
      foreignKeys: [{ constraint: 't_parent_fk', columns: ['parent_id'], to: 'app.t', referencedColumns: ['id'] }],
      nullThenUpdate: [],
      userTriggers: [],
      ...over,
    }) as PlanTable;
  const replica = { fkEnforcement: 'replica' as const };
  const constraints = { fkEnforcement: 'constraints' as const };

  it('never for a shared table: it takes only the parents live lacks, by a merge', () => {
    expect(directEligible(replica, table({ role: 'shared' }))).toBe(false);
    expect(directEligible(constraints, table({ role: 'shared' }))).toBe(false);
    expect(directEligible(replica, table({}))).toBe(true);
    expect(directEligible(replica, table({ role: 'root' }))).toBe(true);
  });

  it('under PostgreSQL FK checks: not with a column to insert NULL first, nor with user triggers', () => {
    expect(directEligible(constraints, table({}))).toBe(true);
    expect(directEligible(constraints, table({ nullThenUpdate: ['parent_id'] }))).toBe(false);
    expect(directEligible(constraints, table({ userTriggers: ['bump_version'] }))).toBe(false);
  });

  it('with FK triggers suspended: cycles and triggers do not matter, a FK column not written does', () => {
    expect(directEligible(replica, table({ nullThenUpdate: ['parent_id'], userTriggers: ['bump_version'] }))).toBe(
      true,
    );
    // A generated FK column is not in the written columns: it could not be read off the stream.
    expect(directEligible(replica, table({ columns: [{ name: 'id', type: 'bigint' }] }))).toBe(false);
    expect(
      directEligible(
        replica,
        table({
          columns: [
            { name: 'id', type: 'bigint' },
            { name: 'a', type: 'bigint' },
          ],
          foreignKeys: [{ constraint: 'c', columns: ['a', 'b'], to: 'app.u', referencedColumns: ['x', 'y'] }],
        }),
      ),
    ).toBe(false);
    expect(directEligible(replica, table({ foreignKeys: [], columns: [] }))).toBe(true);
  });
});
