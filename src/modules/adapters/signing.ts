// Request signing and idempotency keys for calls to downstream systems.
//
// Signature: `X-Blastgate-Signature: v1=<hex HMAC-SHA256(secret, "<ts>.<METHOD>.<path>.<body>")>`
// with `X-Blastgate-Timestamp: <unix ms>`. The path is the request target exactly as sent (path and
// query), so a receiver verifies with its raw `req.url` and raw body bytes, before parsing JSON.
// The timestamp is inside the MAC and checked against a tolerance, so a captured request cannot be
// replayed later; the version prefix lets the scheme change without breaking receivers.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { AdapterItem, DestructiveAction } from './types.ts';

export const SIGNATURE_HEADER = 'x-blastgate-signature';
export const TIMESTAMP_HEADER = 'x-blastgate-timestamp';
export const IDEMPOTENCY_HEADER = 'idempotency-key';

/** Receivers should refuse timestamps further than this from their clock (replay window). */
export const DEFAULT_TOLERANCE_MS = 5 * 60_000;

export interface SignedParts {
  timestamp: number;
  method: string;
  path: string;
  body: string;
}

export function signaturePayload(p: SignedParts): string {
  return `${p.timestamp}.${p.method.toUpperCase()}.${p.path}.${p.body}`;
}

/** The header value: `v1=<hex>`. */
export function sign(secret: string, p: SignedParts): string {
  return `v1=${createHmac('sha256', secret).update(signaturePayload(p)).digest('hex')}`;
}

export interface VerifyInput {
  signature: string | undefined;
  timestamp: string | undefined;
  method: string;
  path: string;
  body: string;
}

/**
 * Checks a received request. Constant-time comparison (no timing oracle on the MAC); a missing,
 * malformed or stale header is simply invalid.
 */
export function verify(secret: string, input: VerifyInput, opts: { now?: number; toleranceMs?: number } = {}): boolean {
  const { signature, timestamp } = input;
  if (!signature || !timestamp || !/^\d{1,16}$/.test(timestamp)) return false;
  const ts = Number(timestamp);
  const now = opts.now ?? Date.now();
  if (Math.abs(now - ts) > (opts.toleranceMs ?? DEFAULT_TOLERANCE_MS)) return false;
  const expected = Buffer.from(
    sign(secret, { timestamp: ts, method: input.method, path: input.path, body: input.body }),
  );
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/**
 * The default Idempotency-Key: `bg1-<action>-<40 hex>`, a hash of (operation, resource, action).
 * Deterministic, so a worker that crashes and re-runs the item sends the same key and the owning
 * system applies the call once; hashed, so IDs containing separators cannot collide and the key
 * stays short (APIs commonly cap keys at 255 characters) whatever the IDs' length.
 */
export function idempotencyKeyFor(
  item: Pick<AdapterItem, 'operationId' | 'resourceId'>,
  action: DestructiveAction,
): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([item.operationId, item.resourceId, action]))
    .digest('hex');
  return `bg1-${action}-${digest.slice(0, 40)}`;
}
