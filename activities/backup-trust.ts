/**
 * Where a backup's sha256 comes from. A pg_dump archive is code for the role that loads it (a CHECK constraint that
 * calls a function of the archive runs while pg_restore copies the rows), so the digest that says "this is the archive
 * the backup job wrote" must come from somewhere the archive's writer cannot write: the manifest next to the archive
 * (`<key>.manifest.json`) is in the same bucket, so it counts only when it carries an Ed25519 signature made by the
 * backup job's private key, checked here against the public key(s) the workers hold
 * (`TENANT_RESTORE_BACKUP_PUBLIC_KEY`). Whoever can write the bucket but does not hold the private key can neither
 * forge a manifest for a new archive nor move a signed manifest onto another archive: the signature covers the
 * archive's key, its sha256, its size and when it was taken.
 *
 * The signed text is plain lines, so that a backup job can sign with openssl alone (README, Trust):
 *
 *   tenant-restore backup manifest v1
 *   key=<the archive's S3 key, without the bucket>
 *   sha256=<64 hex>
 *   size=<bytes>
 *   createdAt=<ISO 8601, or empty>
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

/** The manifest's signature: `value` is the base64 Ed25519 signature of `manifestPayload`. */
export interface ManifestSignature {
  alg: 'ed25519';
  /** The first 16 hex of sha256 of the signing key's public key (DER), to tell keys apart while rotating. */
  keyId?: string;
  value: string;
}

/** The fields of `<key>.manifest.json` that verification reads (a manifest may carry more). */
export interface ManifestClaims {
  sha256?: string;
  size?: number;
  createdAt?: string;
  signature?: ManifestSignature;
}

/** The variable that holds the public key(s): PEM text, or the path of a PEM file; several PUBLIC KEY blocks rotate. */
export const publicKeyVariable = 'TENANT_RESTORE_BACKUP_PUBLIC_KEY';

/** The exact bytes a backup job signs. `key` is the archive's key in its bucket (no bucket: a replica still verifies). */
export function manifestPayload(key: string, claims: { sha256: string; size: number; createdAt?: string }): Buffer {
  for (const [name, value] of [
    ['key', key],
    ['createdAt', claims.createdAt ?? ''],
  ] as const)
    if (/[\r\n]/.test(value)) throw new Error(`a manifest's ${name} cannot hold a line break`);
  return Buffer.from(
    `tenant-restore backup manifest v1\nkey=${key}\nsha256=${claims.sha256.toLowerCase()}\nsize=${claims.size}\ncreatedAt=${claims.createdAt ?? ''}\n`,
    'utf8',
  );
}

/** 16 hex of sha256 of the public key's DER: names a key without showing it. */
export function keyIdOf(key: KeyObject): string {
  const der = (key.type === 'private' ? createPublicKey(key) : key).export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

/** Signs a manifest for the archive at `key` (what a backup job does; scripts/workload/backup.ts for the stack). */
export function signManifest<T extends { sha256: string; size: number; createdAt?: string }>(
  key: string,
  manifest: T,
  privateKeyPem: string,
): T & { signature: ManifestSignature } {
  const privateKey = createPrivateKey(privateKeyPem);
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('the backup signing key must be an Ed25519 key');
  const value = sign(null, manifestPayload(key, manifest), privateKey).toString('base64');
  return { ...manifest, signature: { alg: 'ed25519', keyId: keyIdOf(privateKey), value } };
}

/** Thrown when the public key setting cannot be read or holds no Ed25519 public key. */
export class BackupKeyError extends Error {
  override name = 'BackupKeyError';
}

/**
 * The public keys of `TENANT_RESTORE_BACKUP_PUBLIC_KEY` (PEM text, or a file path), or [] when it is not set. A
 * setting that is there but unusable throws: a typo must not silently make every backup unverifiable.
 */
export function backupPublicKeys(env: NodeJS.ProcessEnv = process.env): KeyObject[] {
  const setting = env[publicKeyVariable]?.trim();
  if (!setting) return [];
  let text = setting;
  if (!setting.startsWith('-----BEGIN')) {
    if (!existsSync(setting))
      throw new BackupKeyError(
        `${publicKeyVariable}=${setting} is neither a PEM public key nor a file that exists: set it to the backup job's Ed25519 public key (PEM), or to the path of its file.`,
      );
    text = readFileSync(setting, 'utf8');
  }
  const blocks = text.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [];
  const keys = blocks.map((pem) => {
    try {
      return createPublicKey(pem);
    } catch (error) {
      throw new BackupKeyError(
        `${publicKeyVariable} holds a PUBLIC KEY block that does not parse: ${(error as Error).message}`,
      );
    }
  });
  if (keys.length === 0 || keys.some((k) => k.asymmetricKeyType !== 'ed25519'))
    throw new BackupKeyError(
      `${publicKeyVariable} must hold one or more Ed25519 public keys in PEM (-----BEGIN PUBLIC KEY-----); ${keys.length === 0 ? 'it holds none' : 'it holds another kind of key'}.`,
    );
  return keys;
}

export type ManifestVerdict =
  | { verified: true; sha256: string; size: number; createdAt?: string; keyId: string }
  | {
      verified: false;
      /** Why nothing vouches for the archive, in one sentence for the refusal (and for the log when it is allowed). */
      why: string;
      /** True when a signature was there and is wrong (forged, another archive's, or another key's). */
      forged: boolean;
    };

/**
 * Does the manifest, signed by one of `keys`, vouch for the archive at `key`? Pure: the caller reads the manifest and
 * the keys. A manifest is vouched for only when its signature verifies over this key's payload with its own sha256,
 * size and createdAt.
 */
export function judgeManifest(key: string, manifest: ManifestClaims | undefined, keys: KeyObject[]): ManifestVerdict {
  if (!manifest) return { verified: false, forged: false, why: `there is no ${key}.manifest.json next to it` };
  const { sha256, size, signature } = manifest;
  if (
    typeof sha256 !== 'string' ||
    !/^[0-9a-f]{64}$/i.test(sha256) ||
    typeof size !== 'number' ||
    !Number.isSafeInteger(size)
  )
    return { verified: false, forged: false, why: `its manifest has no sha256 and size to check` };
  if (!signature || typeof signature.value !== 'string')
    return {
      verified: false,
      forged: false,
      why: `its manifest is not signed, and anyone who can write the bucket can write a manifest`,
    };
  if (keys.length === 0)
    return {
      verified: false,
      forged: false,
      why: `its manifest is signed, but this worker holds no public key to check it with (${publicKeyVariable} is not set)`,
    };
  if (signature.alg !== 'ed25519')
    return {
      verified: false,
      forged: true,
      why: `its manifest's signature is not Ed25519 (alg ${String(signature.alg).slice(0, 20)})`,
    };
  let payload: Buffer;
  try {
    payload = manifestPayload(key, { sha256, size, createdAt: manifest.createdAt });
  } catch {
    return { verified: false, forged: true, why: `its manifest's createdAt holds a line break` };
  }
  const bytes = Buffer.from(signature.value, 'base64');
  for (const publicKey of keys) {
    let ok = false;
    try {
      ok = verify(null, payload, publicKey, bytes);
    } catch {
      ok = false;
    }
    if (ok)
      return {
        verified: true,
        sha256: sha256.toLowerCase(),
        size,
        createdAt: manifest.createdAt,
        keyId: keyIdOf(publicKey),
      };
  }
  return {
    verified: false,
    forged: true,
    why: `its manifest's signature does not verify with the workers' public key${keys.length > 1 ? 's' : ''} (${keys.map(keyIdOf).join(', ')}): the manifest was changed, belongs to another archive, or was signed with another key`,
  };
}
