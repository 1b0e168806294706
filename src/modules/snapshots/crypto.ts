// Snapshot encryption. Every resource has its own data key (AES-256-GCM); its snapshots are
// encrypted with it, and the key is kept only wrapped by the master key (BLASTGATE_SNAPSHOT_KEY).
// A compliance erasure destroys the resource's wrapped keys: its snapshots stay in the insert-only
// store (the audit trail of what was taken stays whole) but can never be read again.
//
// Each snapshot carries sha256 over its content's RFC 8785 canonical JSON (lib/canonical-json.ts),
// bound into the ciphertext as associated data, and a read verifies what it decrypts:
// GCM's tag proves the ciphertext was not altered, the hash proves it is the content the ledger
// points at.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { canonicalJson } from '../../lib/canonical-json.ts';

const ALGORITHM = 'aes-256-gcm';
export const IV_BYTES = 12;
export const TAG_BYTES = 16;
export const KEY_BYTES = 32;

export interface Sealed {
  iv: Buffer;
  tag: Buffer;
  ciphertext: Buffer;
}

/** The canonical form and its sha256 (hex): what a snapshot is addressed by. */
export function contentOf(data: unknown): { canonical: string; hash: string } {
  const canonical = canonicalJson(data);
  return { canonical, hash: createHash('sha256').update(canonical, 'utf8').digest('hex') };
}

/**
 * Encrypts under a fresh 12-byte random IV. `iv` lets a batch draw all its IVs with one randomBytes
 * call (bulkRandom); each must still be fresh random bytes, never reused under the same key.
 */
export function seal(key: Buffer, plaintext: Buffer | string, aad: string, iv: Buffer = randomBytes(IV_BYTES)): Sealed {
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  // A string is encoded by the cipher itself (no intermediate Buffer); GCM's final() is empty.
  const body = typeof plaintext === 'string' ? cipher.update(plaintext, 'utf8') : cipher.update(plaintext);
  const tail = cipher.final();
  return { iv, tag: cipher.getAuthTag(), ciphertext: tail.length ? Buffer.concat([body, tail]) : body };
}

/** Throws when the key is wrong or anything (iv, tag, ciphertext, aad) was altered. */
export function open(key: Buffer, s: Sealed, aad: string): Buffer {
  const decipher = createDecipheriv(ALGORITHM, key, s.iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(s.tag);
  return Buffer.concat([decipher.update(s.ciphertext), decipher.final()]);
}

/** Sealed into one buffer (iv ‖ tag ‖ ciphertext): the form small secrets are stored in. */
export function sealPacked(key: Buffer, plaintext: Buffer, aad: string, iv?: Buffer): Buffer {
  const s = seal(key, plaintext, aad, iv);
  return Buffer.concat([s.iv, s.tag, s.ciphertext]);
}

/** Opens what sealPacked made; throws when it is too short, the key is wrong or anything was altered. */
export function openPacked(key: Buffer, packed: Buffer, aad: string): Buffer {
  if (packed.length < IV_BYTES + TAG_BYTES) throw new Error('sealed value too short');
  return open(
    key,
    {
      iv: packed.subarray(0, IV_BYTES),
      tag: packed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES),
      ciphertext: packed.subarray(IV_BYTES + TAG_BYTES),
    },
    aad,
  );
}

/** A new data key, and its wrapped form (iv ‖ tag ‖ ciphertext) under the master key. */
export function newDataKey(master: Buffer, resourceId: string): { key: Buffer; wrapped: Buffer } {
  return newDataKeys(master, [resourceId])[0]!;
}

/**
 * New data keys for many resources, drawing the random bytes of every key and wrapping IV with one
 * randomBytes call (the per-call overhead dominates at 44 bytes). Each key and IV is its own slice.
 */
export function newDataKeys(master: Buffer, resourceIds: readonly string[]): { key: Buffer; wrapped: Buffer }[] {
  const pool = randomBytes(resourceIds.length * (KEY_BYTES + IV_BYTES));
  return resourceIds.map((id, k) => {
    const at = k * (KEY_BYTES + IV_BYTES);
    const key = pool.subarray(at, at + KEY_BYTES);
    const iv = pool.subarray(at + KEY_BYTES, at + KEY_BYTES + IV_BYTES);
    return { key, wrapped: sealPacked(master, key, `key:${id}`, iv) };
  });
}

/** `count` fresh random IVs from one randomBytes call (slices of one buffer). */
export function freshIvs(count: number): Buffer[] {
  const pool = randomBytes(count * IV_BYTES);
  return Array.from({ length: count }, (_, k) => pool.subarray(k * IV_BYTES, (k + 1) * IV_BYTES));
}

export function unwrapDataKey(master: Buffer, resourceId: string, wrapped: Buffer): Buffer {
  return openPacked(master, wrapped, `key:${resourceId}`);
}

/** The master key from its configured form: 64 hex characters, or base64 of 32 bytes. */
export function parseMasterKey(value: string): Buffer | undefined {
  const v = value.trim();
  if (/^[0-9a-fA-F]{64}$/.test(v)) return Buffer.from(v, 'hex');
  if (/^[A-Za-z0-9+/]{43}=?$/.test(v)) return Buffer.from(v, 'base64');
  return undefined;
}
