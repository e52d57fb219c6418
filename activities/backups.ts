/**
 * Which pg_dump archive to restore from: the newest under an S3 prefix, or the newest taken before a moment (the
 * incident). An archive was taken when its manifest says (`createdAt`, when pg_dump began: its snapshot), else when it
 * was uploaded (later than its snapshot, so "uploaded before" is safe). Manifests and other JSON are not archives.
 * The drill (activities/drill.ts) and `start`/`discover --backup-prefix` use it.
 */
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { formatS3Url, getJson, parseS3Prefix } from './s3';

export interface PickedBackup {
  backup: string;
  /** When it was taken: the manifest's createdAt, else its upload time. */
  takenAt: string;
  takenBy: 'manifest' | 'upload time';
  lastModified: string;
  size: number;
}

/** No archive fits: none under the prefix, or none taken before the moment (exit 2 in the CLI). */
export class NoBackupFoundError extends Error {
  override name = 'NoBackupFound';
}

export async function pickBackup(
  s3: S3Client,
  prefixUrl: string,
  before?: Date,
  onPage: () => void = () => undefined,
): Promise<PickedBackup> {
  const { bucket, prefix } = parseS3Prefix(prefixUrl);
  const archives: Array<{ key: string; lastModified: Date; size: number }> = [];
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const o of page.Contents ?? [])
      if (o.Key && o.LastModified && !o.Key.endsWith('.json') && !o.Key.endsWith('/'))
        archives.push({ key: o.Key, lastModified: o.LastModified, size: o.Size ?? 0 });
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
    onPage();
  } while (token);
  if (archives.length === 0) throw new NoBackupFoundError(`No backup under ${prefixUrl}.`);
  // Newest upload first (a tie broken by key, as drills always did).
  archives.sort((a, b) => b.lastModified.getTime() - a.lastModified.getTime() || b.key.localeCompare(a.key));
  const takenAt = async (a: (typeof archives)[number]): Promise<PickedBackup> => {
    const manifest = await getJson<{ createdAt?: string }>(s3, { bucket, key: `${a.key}.manifest.json` }).catch(
      () => undefined,
    );
    const created =
      manifest?.createdAt && !Number.isNaN(Date.parse(manifest.createdAt)) ? manifest.createdAt : undefined;
    return {
      backup: formatS3Url({ bucket, key: a.key }),
      takenAt: created ? new Date(created).toISOString() : a.lastModified.toISOString(),
      takenBy: created ? 'manifest' : 'upload time',
      lastModified: a.lastModified.toISOString(),
      size: a.size,
    };
  };
  if (!before) return takenAt(archives[0]!);
  // Uploaded before the moment: taken before it too. Uploaded after it: maybe taken before (a dump that began
  // before the incident and ended after it), so those are read first, newest first.
  for (const a of archives) {
    const picked = await takenAt(a);
    if (Date.parse(picked.takenAt) < before.getTime()) return picked;
  }
  const oldest = await takenAt(archives[archives.length - 1]!);
  throw new NoBackupFoundError(
    `No backup under ${prefixUrl} was taken before ${before.toISOString()}: the oldest of its ${archives.length} is ${oldest.backup}, taken ${oldest.takenAt} (by its ${oldest.takenBy}). Choose a later --at, or another --backup-prefix.`,
  );
}

/** "5 h 3 min": how long before `later` the backup was taken, for the operator. */
export function age(takenAt: string, later: Date): string {
  const minutes = Math.max(0, Math.round((later.getTime() - Date.parse(takenAt)) / 60_000));
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} days ${hours % 24} h`;
}
