/**
 * S3 access from the standard AWS environment (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_REGION), with path-style addressing so that MinIO and other S3-compatible stores work.
 */
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';

// The SDK warns on every process start that releases after January 2027 will need Node 22. The lockfile pins this
// release, so for operators it is noise on stderr: silenced unless the environment says otherwise.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface S3Location {
  bucket: string;
  key: string;
}

export class S3UrlError extends Error {
  override name = 'S3UrlError';
}

/** Parses `s3://bucket/key`. */
export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(url);
  if (!match) throw new S3UrlError(`'${url}' is not an S3 URL: expected s3://<bucket>/<key>.`);
  return { bucket: match[1], key: match[2] };
}

/** Parses `s3://bucket[/prefix]` (a folder: the prefix may be empty). */
export function parseS3Prefix(url: string): { bucket: string; prefix: string } {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(url);
  if (!match) throw new S3UrlError(`'${url}' is not s3://<bucket>/<prefix>`);
  return { bucket: match[1]!, prefix: match[2]! };
}

export function formatS3Url(location: S3Location): string {
  return `s3://${location.bucket}/${location.key}`;
}

export function createS3Client(env: NodeJS.ProcessEnv = process.env): S3Client {
  return new S3Client({
    endpoint: env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined,
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    forcePathStyle: true,
  });
}

export async function putJson(s3: S3Client, location: S3Location, value: unknown): Promise<void> {
  await s3.send(
    new PutObjectCommand({
      Bucket: location.bucket,
      Key: location.key,
      Body: JSON.stringify(value, null, 2),
      ContentType: 'application/json',
    }),
  );
}

export async function putText(
  s3: S3Client,
  location: S3Location,
  body: string,
  contentType = 'text/plain',
): Promise<void> {
  await s3.send(
    new PutObjectCommand({ Bucket: location.bucket, Key: location.key, Body: body, ContentType: contentType }),
  );
}

export async function getText(s3: S3Client, location: S3Location): Promise<string> {
  const response = await s3.send(new GetObjectCommand({ Bucket: location.bucket, Key: location.key }));
  return response.Body!.transformToString('utf8');
}

export async function getJson<T>(s3: S3Client, location: S3Location): Promise<T> {
  return JSON.parse(await getText(s3, location)) as T;
}

export async function getStream(
  s3: S3Client,
  location: S3Location,
  signal?: AbortSignal,
): Promise<{ body: Readable; size?: number; metadata: Record<string, string> }> {
  const response = await s3.send(new GetObjectCommand({ Bucket: location.bucket, Key: location.key }), {
    abortSignal: signal,
  });
  return { body: response.Body as Readable, size: response.ContentLength, metadata: response.Metadata ?? {} };
}

export async function head(
  s3: S3Client,
  location: S3Location,
): Promise<{ size?: number; metadata: Record<string, string>; lastModified?: Date }> {
  const response = await s3.send(new HeadObjectCommand({ Bucket: location.bucket, Key: location.key }));
  return { size: response.ContentLength, metadata: response.Metadata ?? {}, lastModified: response.LastModified };
}
