// Request signing and idempotency keys for calls to downstream systems.
//
// Scheme v2 (the only one sent):
//   X-Blastgate-Timestamp: <unix ms>
//   X-Blastgate-Signature: v2=<hex HMAC-SHA256(secret, payload)>
//   payload = "v2" LF <timestamp> LF <METHOD> LF <host> LF <path> LF <body>
// - secret: the adapter's own signing secret (`signingSecret` in its declaration, or the default);
// - METHOD: upper case; path: the request target exactly as sent (path and query), so a receiver
//   uses its raw `req.url`; body: the raw body bytes as UTF-8 ('' for none), before parsing JSON;
// - host: `<hostname>:<port>` of the adapter's baseUrl, hostname lower case as the URL parser
//   writes it (IPv6 in brackets), the port always written (80 for http, 443 for https when the URL
//   has none). A receiver compares against the host[:port] it knows it is reached at, NOT against
//   the Host header it received (whoever replays a request chooses that header): so a request
//   signed for one system cannot be replayed to another that shares the secret.
// No part can contain a line feed (templates and encoded IDs have no whitespace; the body is last),
// so the payload splits one way only. The timestamp is inside the MAC and checked against a
// tolerance, so a captured request cannot be replayed later; the version is inside the MAC and the
// prefix, so a v1 signature (no host) is never taken for a v2 one.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { AdapterItem, DestructiveAction } from './types.ts';

export const SIGNATURE_HEADER = 'x-blastgate-signature';
export const TIMESTAMP_HEADER = 'x-blastgate-timestamp';
export const IDEMPOTENCY_HEADER = 'idempotency-key';
export const SIGNATURE_VERSION = 'v2';

/** Receivers should refuse timestamps further than this from their clock (replay window). */
export const DEFAULT_TOLERANCE_MS = 5 * 60_000;

export interface SignedParts {
  timestamp: number;
  method: string;
  /** `<hostname>:<port>`, see signingHost(). */
  host: string;
  path: string;
  body: string;
}

/** The host as signed: `<hostname>:<port>`, the scheme's default port written out. */
export function signingHost(url: URL): string {
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`;
}

export function signaturePayload(p: SignedParts): string {
  return [SIGNATURE_VERSION, p.timestamp, p.method.toUpperCase(), p.host, p.path, p.body].join('\n');
}

/** The header value: `v2=<hex>`. */
export function sign(secret: string, p: SignedParts): string {
  return `${SIGNATURE_VERSION}=${createHmac('sha256', secret).update(signaturePayload(p)).digest('hex')}`;
}

export interface VerifyInput {
  signature: string | undefined;
  timestamp: string | undefined;
  method: string;
  /** The receiver's own `<hostname>:<port>`, from its configuration (not the Host header). */
  host: string;
  path: string;
  body: string;
}

/**
 * Checks a received request. Constant-time comparison (no timing oracle on the MAC); a missing,
 * malformed or stale header, or a signature made for another host, is simply invalid.
 */
export function verify(secret: string, input: VerifyInput, opts: { now?: number; toleranceMs?: number } = {}): boolean {
  const { signature, timestamp } = input;
  if (!signature || !timestamp || !/^\d{1,16}$/.test(timestamp)) return false;
  const ts = Number(timestamp);
  const now = opts.now ?? Date.now();
  if (Math.abs(now - ts) > (opts.toleranceMs ?? DEFAULT_TOLERANCE_MS)) return false;
  const expected = Buffer.from(
    sign(secret, { timestamp: ts, method: input.method, host: input.host, path: input.path, body: input.body }),
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

/**
 * The Idempotency-Keys of a restore drill (`bg1-drill-restore-…`, `bg1-drill-softDelete-…`): never
 * the item's own keys, which the owning system has already applied (it would replay the stored
 * answer instead of acting), and one set per drill run, so a drill run again after a resume acts
 * again. The `bg1-drill-` prefix tells a drill's calls from the operation's own ones.
 */
export function drillKeyFor(
  item: Pick<AdapterItem, 'operationId' | 'resourceId'>,
  action: DestructiveAction,
  drillId: string,
): string {
  const digest = createHash('sha256')
    .update(JSON.stringify([item.operationId, item.resourceId, `drill-${action}`, drillId]))
    .digest('hex');
  return `${DRILL_KEY_PREFIX}${action}-${digest.slice(0, 40)}`;
}
export const DRILL_KEY_PREFIX = 'bg1-drill-';
