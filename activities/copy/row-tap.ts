/**
 * Reading COPY text as it streams past: the fields of each line, NULL written in place of a field, and a value's
 * escapes undone.
 */
import { Transform, type TransformCallback } from 'node:stream';

/**
 * The fields of a COPY text stream that the direct path reads as the rows pass: one line per row (COPY escapes
 * newlines and tabs inside values), fields separated by tabs, `\N` for NULL. Values are kept in their escaped form:
 * two fields hold the same value exactly when their escaped texts are equal (the same session wrote both). The bytes
 * pass through unchanged.
 */
export class RowTap extends Transform {
  private rest: Buffer | null = null;
  constructor(
    private readonly fields: number[],
    private readonly onRow: (values: Array<string | null>) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    try {
      let start = 0;
      if (this.rest) {
        const newline = chunk.indexOf(10);
        if (newline < 0) {
          this.rest = Buffer.concat([this.rest, chunk]);
          return done(null, chunk);
        }
        const line = Buffer.concat([this.rest, chunk.subarray(0, newline)]);
        this.rest = null;
        this.line(line, 0, line.length);
        start = newline + 1;
      }
      for (let newline = chunk.indexOf(10, start); newline >= 0; newline = chunk.indexOf(10, start)) {
        this.line(chunk, start, newline);
        start = newline + 1;
      }
      if (start < chunk.length) this.rest = Buffer.from(chunk.subarray(start));
      done(null, chunk);
    } catch (error) {
      done(error as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    done(this.rest?.length ? new Error('COPY stream ended inside a row') : null);
  }

  private line(buffer: Buffer, start: number, end: number): void {
    this.onRow(lineFields(buffer, start, end, this.fields));
  }
}

/**
 * Calls `visit(from, to)` with the span of each field of `fields` (ascending indexes) of the COPY text row in `buffer`
 * from `start` to `end` (its newline, excluded). A row with fewer fields is refused: the next tab would be the next
 * row's.
 */
function eachField(
  buffer: Buffer,
  start: number,
  end: number,
  fields: number[],
  visit: (from: number, to: number) => void,
): void {
  let field = 0;
  let position = start;
  for (const wanted of fields) {
    for (; field < wanted; field++) {
      const tab = buffer.indexOf(9, position);
      if (tab < 0 || tab >= end) throw new Error(`COPY row has fewer fields than expected (${wanted + 1})`);
      position = tab + 1;
    }
    if (position > end) throw new Error(`COPY row has fewer fields than expected (${wanted + 1})`);
    let tab = buffer.indexOf(9, position);
    if (tab < 0 || tab > end) tab = end;
    visit(position, tab);
    field++;
    position = tab + 1;
  }
}

/**
 * The fields `fields` (ascending indexes) of the COPY text row in `buffer` from `start` to `end` (its newline, excluded),
 * in their escaped form, null for `\N`.
 */
export function lineFields(buffer: Buffer, start: number, end: number, fields: number[]): Array<string | null> {
  const values: Array<string | null> = [];
  eachField(buffer, start, end, fields, (from, to) => {
    const isNull = to - from === 2 && buffer[from] === 92 && buffer[from + 1] === 78;
    values.push(isNull ? null : buffer.toString('utf8', from, to));
  });
  return values;
}

/** The COPY text row `line` (with its newline) with the fields `fields` (ascending indexes) set to NULL (`\N`). */
export function withNullFields(line: Buffer, fields: number[]): Buffer {
  const parts: Buffer[] = [];
  let kept = 0;
  eachField(line, 0, line.length - 1, fields, (from, to) => {
    parts.push(line.subarray(kept, from), nullText);
    kept = to;
  });
  parts.push(line.subarray(kept));
  return Buffer.concat(parts);
}

const nullText = Buffer.from('\\N');

/** A value of a COPY text stream as it was before escaping (COPY TO escapes backslash and the control characters). */
export function unescapeCopyText(text: string): string {
  if (!text.includes('\\')) return text;
  const escapes: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
  return text.replace(/\\(.)/gs, (_, c: string) => escapes[c] ?? c);
}
