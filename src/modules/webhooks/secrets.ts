// Webhook signing secrets. The server makes them (the receiver needs the exact value to verify) and
// must read them back to sign, so unlike downstream signing secrets (adapters/signing-secrets.ts:
// named, in this process's environment, never in the database) they live in the database, sealed
// the way snapshot keys are (snapshots/crypto.ts: AES-256-GCM under BLASTGATE_SNAPSHOT_KEY, bound
// to the endpoint id). A database dump alone does not reveal them; the API shows a secret once.
import { randomBytes } from 'node:crypto';
import { open, seal } from '../snapshots/crypto.ts';

const IV_BYTES = 12;
const TAG_BYTES = 16;
const aad = (endpointId: string) => `webhook:${endpointId}`;

/** `whsec_` + base64 of 32 random bytes: the form the standardwebhooks libraries take. */
export const generateWebhookSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

export function sealSecret(master: Buffer, endpointId: string, secret: string): Buffer {
  const s = seal(master, Buffer.from(secret, 'utf8'), aad(endpointId));
  return Buffer.concat([s.iv, s.tag, s.ciphertext]);
}

export function openSecret(master: Buffer, endpointId: string, sealed: Buffer): string {
  return open(
    master,
    {
      iv: sealed.subarray(0, IV_BYTES),
      tag: sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES),
      ciphertext: sealed.subarray(IV_BYTES + TAG_BYTES),
    },
    aad(endpointId),
  ).toString('utf8');
}
