// The bearer token of a CI intake job leaves Redis as soon as a worker picks the job up. A job that
// then waits for a retry (PostgreSQL down) must still be able to authenticate again, revocation
// checked anew: meanwhile it holds the token sealed (AES-256-GCM, bound to its job ID) under a key
// derived from the snapshot master key, which only Blastgate processes hold. The seal is dropped
// when the job ends, so a finished job holds neither.
import { hkdfSync } from 'node:crypto';
import { KEY_BYTES, openPacked, sealPacked } from '../snapshots/crypto.ts';

/** A key of its own (HKDF), so a sealed token is never readable with a snapshot data key or vice versa. */
export function intakeSealKey(master: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), 'blastgate intake token seal v1', KEY_BYTES));
}

const aad = (jobId: string) => `intake-token:${jobId}`;

export function sealToken(key: Buffer, token: string, jobId: string): string {
  return sealPacked(key, Buffer.from(token, 'utf8'), aad(jobId)).toString('base64');
}

/** The token, or undefined when the seal is not one of ours for this job (altered, other key, other job). */
export function openToken(key: Buffer, sealed: string, jobId: string): string | undefined {
  try {
    return openPacked(key, Buffer.from(sealed, 'base64'), aad(jobId)).toString('utf8');
  } catch {
    return undefined;
  }
}
