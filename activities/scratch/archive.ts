/**
 * What a backup object is before anything loads it: its manifest next to it in S3, the custom-format archive header
 * (format version, the pg_dump that wrote it) and whether this worker's pg_restore reads that version, and what
 * something that is not such an archive looks like, for the refusal.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import { getJson, type S3Location } from '../s3';

/** Archive format versions (the 3 bytes after `PGDMP`) and the first pg_dump release that writes each. */
const archiveVersions: Array<{ version: string; pgDump: string }> = [
  { version: '1.12', pgDump: '9.0' },
  { version: '1.13', pgDump: '11 (and 9.3.22, 9.4.17, 9.5.12, 9.6.8, 10.3)' },
  { version: '1.14', pgDump: '12' },
  { version: '1.15', pgDump: '16' },
  { version: '1.16', pgDump: '17' },
];
/** The newest archive format each pg_restore major version reads (its K_VERS_MAX). */
const newestReadable: Record<number, string> = {
  10: '1.13',
  11: '1.13',
  12: '1.14',
  13: '1.14',
  14: '1.14',
  15: '1.14',
  16: '1.15',
  17: '1.16',
};

export interface ArchiveHeader {
  /** Archive format version, `major.minor.rev`. */
  version: [number, number, number];
  /** 1 custom, 3 tar, 5 directory (pg_dump's ArchiveFormat). */
  format: number;
  /** The pg_dump that wrote it (`17.2 (Debian ...)`), when the header is readable that far. */
  dumpVersion?: string;
  /** The server it was dumped from. */
  serverVersion?: string;
}

const compareVersions = (a: number[], b: number[]): number => {
  for (let i = 0; i < Math.max(a.length, b.length); i++)
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) - (b[i] ?? 0);
  return 0;
};

/**
 * Reads a custom-format archive's header: `PGDMP`, version (3 bytes), int size, offset size, format, then the
 * compression (an int before 1.15, a byte since), the creation time (7 ints), the database name, and since 1.10 the
 * server's and pg_dump's version strings. Ints are a sign byte then `intSize` bytes, least significant first.
 */
export function parseArchiveHeader(bytes: Buffer): ArchiveHeader | undefined {
  if (bytes.length < 11 || bytes.subarray(0, 5).toString('latin1') !== 'PGDMP') return undefined;
  const version: [number, number, number] = [bytes[5], bytes[6], bytes[7]];
  const intSize = bytes[8];
  const header: ArchiveHeader = { version, format: bytes[10] };
  if (intSize < 1 || intSize > 8) return header;
  let at = 11;
  const readInt = (): number | undefined => {
    if (at + 1 + intSize > bytes.length) return undefined;
    const negative = bytes[at] !== 0;
    let value = 0;
    for (let i = 0; i < intSize; i++) value += bytes[at + 1 + i] * 2 ** (8 * i);
    at += 1 + intSize;
    return negative ? -value : value;
  };
  const readStr = (): string | undefined => {
    const length = readInt();
    if (length === undefined || length < 0 || length > 4096 || at + length > bytes.length) return undefined;
    const text = bytes.subarray(at, at + length).toString('utf8');
    at += length;
    return text;
  };
  if (compareVersions(version, [1, 15]) >= 0) at += 1;
  else if (readInt() === undefined) return header;
  for (let i = 0; i < 7; i++) if (readInt() === undefined) return header;
  if (readStr() === undefined) return header; // database name: not needed
  if (compareVersions(version, [1, 10]) < 0) return header;
  // Only what reads as a version: a damaged header must not put arbitrary bytes into a message.
  const asVersion = (text: string | undefined) =>
    text !== undefined && /^\d+(\.\d+)*[\w .()+~-]*$/.test(text) ? text : undefined;
  header.serverVersion = asVersion(readStr());
  header.dumpVersion = header.serverVersion === undefined ? undefined : asVersion(readStr());
  return header;
}

/** A human name for the first bytes of something that is not a custom-format archive. */
export function describeBackupBytes(bytes: Buffer, totalSize: number): string {
  if (totalSize === 0 || bytes.length === 0) return 'an empty file';
  const starts = (...b: number[]) => b.every((x, i) => bytes[i] === x);
  if (starts(0x1f, 0x8b))
    return 'a gzip file (a compressed plain SQL dump? pg_dump -Fc output is never gzipped as a whole)';
  if (starts(0x50, 0x4b, 0x03, 0x04)) return 'a zip file';
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return 'a zstd file';
  if (starts(0x04, 0x22, 0x4d, 0x18)) return 'an lz4 file';
  if (starts(0x42, 0x5a, 0x68)) return 'a bzip2 file';
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return 'an xz file';
  if (bytes.length >= 262 && bytes.subarray(257, 262).toString('latin1') === 'ustar') {
    return bytes.subarray(0, 7).toString('latin1') === 'toc.dat' ? 'a pg_dump tar archive (pg_dump -Ft)' : 'a tar file';
  }
  const sample = bytes.subarray(0, Math.min(bytes.length, 512));
  const printable = sample.every((b) => b === 0x09 || b === 0x0a || b === 0x0d || (b >= 0x20 && b !== 0x7f));
  if (printable) return 'text (a plain SQL dump, pg_dump -Fp, or a .sql file?)';
  // Only the file's magic number: never more of its content.
  return `unknown binary data (first bytes ${bytes.subarray(0, 4).toString('hex')})`;
}

/** The message for an archive newer than this pg_restore reads, or undefined when it can read it (or cannot tell). */
export function newerArchiveProblem(header: ArchiveHeader, pgRestoreVersion: string): string | undefined {
  const major = Number(/(\d+)(\.\d+)?/.exec(pgRestoreVersion)?.[1]);
  const newest = newestReadable[major];
  if (!newest || compareVersions(header.version, newest.split('.').map(Number)) <= 0) return undefined;
  return newerArchiveMessage(header, pgRestoreVersion, newest);
}

export function newerArchiveMessage(header: ArchiveHeader, pgRestoreVersion: string, newest?: string): string {
  const format = header.version.join('.');
  const short = `${header.version[0]}.${header.version[1]}`;
  const release = archiveVersions.find((v) => v.version === short)?.pgDump;
  const writer = header.dumpVersion
    ? `pg_dump ${header.dumpVersion}`
    : release
      ? `pg_dump ${release} or later`
      : 'a pg_dump newer than 17';
  return (
    `it was written by ${writer} (archive format ${format}), and this worker has ${pgRestoreVersion.trim()}` +
    `${newest ? `, which reads archive formats up to ${newest}` : ''}. It is not corrupt: install a pg_restore at least as new as that pg_dump on the workers (the PostgreSQL client package of that major version), then start the restore again.`
  );
}

export async function readManifest(
  s3: S3Client,
  location: S3Location,
): Promise<{ sha256?: string; size?: number } | undefined> {
  try {
    return await getJson<{ sha256?: string; size?: number }>(s3, {
      bucket: location.bucket,
      key: `${location.key}.manifest.json`,
    });
  } catch (error) {
    const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
    throw error;
  }
}

/** pg_restore's words for an archive that is cut short or damaged (not for a database problem). */
export const corruptArchive =
  /could not read from input file|unexpected end of file|did not find magic string|could not find block ID|input file is too short|corrupt|unsupported version .* in file header|could not uncompress data/i;
