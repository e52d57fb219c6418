/**
 * Complete COPY text lines read off a scratch stream in batches, for the chunked direct path.
 */

/** Lines read off the scratch stream per step: a batch, written to live in one write. */
export const linesPerRead = 4096;

/** Reads complete COPY text lines off a stream, in batches, up to a count; the rest stays for the next call. */
export class LineReader {
  private buffer: Buffer | null = null;
  private offset = 0;
  private rest: Buffer | null = null;
  private ended = false;
  constructor(private readonly iterator: AsyncIterator<Buffer>) {}

  /** Up to `max` lines (each with its newline), or [] at the end of the stream. */
  async next(max: number): Promise<Buffer[]> {
    const lines: Buffer[] = [];
    while (lines.length < max) {
      if (!this.buffer || this.offset >= this.buffer.length) {
        if (this.ended) break;
        const { value, done } = await this.iterator.next();
        if (done) {
          this.ended = true;
          if (this.rest?.length) throw new Error('COPY stream ended inside a row');
          break;
        }
        this.buffer = value;
        this.offset = 0;
        if (this.rest) {
          const newline = value.indexOf(10);
          if (newline < 0) {
            this.rest = Buffer.concat([this.rest, value]);
            this.buffer = null;
            continue;
          }
          lines.push(Buffer.concat([this.rest, value.subarray(0, newline + 1)]));
          this.rest = null;
          this.offset = newline + 1;
          continue;
        }
      }
      const newline = this.buffer.indexOf(10, this.offset);
      if (newline < 0) {
        this.rest = Buffer.from(this.buffer.subarray(this.offset));
        this.buffer = null;
        continue;
      }
      lines.push(this.buffer.subarray(this.offset, newline + 1));
      this.offset = newline + 1;
    }
    return lines;
  }

  /**
   * Reads the stream to its end. A COPY stream of pg-copy-streams destroyed before its end leaves its connection
   * detached from the client (the rest of the COPY is never read): the session's next query, the ROLLBACK of
   * closeSession, would wait forever. Only a copy that stops mid-table (a hand-over, a failure, a cancel) reads the
   * rest, and throws it away.
   */
  async close(): Promise<void> {
    this.buffer = null;
    this.rest = null;
    while (!this.ended) if ((await this.iterator.next()).done) this.ended = true;
  }
}
