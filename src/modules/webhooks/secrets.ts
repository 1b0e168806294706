// Webhook signing secrets. The server makes them (the receiver needs the exact value to verify) and
// must read them back to sign, so unlike downstream signing secrets (adapters/signing-secrets.ts:
// named, in this process's environment, never in the database) they live in the database, sealed
// the way snapshot keys are (snapshots/crypto.ts: AES-256-GCM under BLASTGATE_SNAPSHOT_KEY, bound
// to the endpoint id). A database dump alone does not reveal them; the API shows a secret once.
import { randomBytes } from 'node:crypto';
import { openPacked, sealPacked } from '../snapshots/crypto.ts';

const aad = (endpointId: string) => `webhook:${endpointId}`;

/** `whsec_` + base64 of 32 random bytes: the form the standardwebhooks libraries take. */
export const generateWebhookSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

export function sealSecret(master: Buffer, endpointId: string, secret: string): Buffer {
  return sealPacked(master, Buffer.from(secret, 'utf8'), aad(endpointId));
}

export function openSecret(master: Buffer, endpointId: string, sealed: Buffer): string {
  return openPacked(master, sealed, aad(endpointId)).toString('utf8');
}
