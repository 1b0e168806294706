// The bearer token of a CI intake job leaves Redis as soon as a worker picks the job up. A job that
// then waits for a retry (PostgreSQL down) must still be able to authenticate again, revocation
// checked anew: meanwhile it holds the token sealed (AES-256-GCM, bound to its job ID) under a key
// derived from the snapshot master key, which only Blastgate processes hold. The seal is dropped
// when the job ends, so a finished job holds neither.
import { hkdfSync } from 'node:crypto';
import { KEY_BYTES, open, seal } from '../snapshots/crypto.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** A key of its own (HKDF), so a sealed token is never readable with a snapshot data key or vice versa. */
export function intakeSealKey(master: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'blastgate intake token seal v1', KEY_BYTES));
}

const aad = (jobId: string) => `intake-token:${jobId}`;

export function sealToken(key: Buffer, token: string, jobId: string): string {
  const s = seal(key, Buffer.from(token, 'utf8'), aad(jobId));
  return Buffer.concat([s.iv, s.tag, s.ciphertext]).toString('base64');
}

/** The token, or undefined when the seal is not one of ours for this job (altered, other key, other job). */
export function openToken(key: Buffer, sealed: string, jobId: string): string | undefined {
  try {
    const b = Buffer.from(sealed, 'base64');
    if (b.length <= IV_BYTES + TAG_BYTES) return undefined;
    const plain = open(
      key,
      {
        iv: b.subarray(0, IV_BYTES),
        tag: b.subarray(IV_BYTES, IV_BYTES + TAG_BYTES),
        ciphertext: b.subarray(IV_BYTES + TAG_BYTES),
      },
      aad(jobId),
    );
    return plain.toString('utf8');
  } catch {
    return undefined;
  }
}
