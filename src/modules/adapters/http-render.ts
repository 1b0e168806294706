// What the http adapter puts on the wire and in the ledger: request targets rendered from
// templates (refusing values that would address another path), and failure reasons that keep the
// status but never the downstream's words (a response body may echo tokens, internal hosts or
// personal data, and the ledger's lastError is readable by every viewer).
import { STATUS_CODES } from 'node:http';

export type Rendered = { ok: true; target: string } | { ok: false; reason: string };

/** Characters that end or split a path segment once a receiver decodes the segment. */
const SEPARATOR = /[/\\?#]/;

function segmentProblem(value: string): string | null {
  if (value === '') return 'is empty';
  if (value === '.' || value === '..') return 'is a dot segment';
  if (SEPARATOR.test(value)) return 'contains a path separator (/, \\, ? or #)';
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    return null; // not percent-encoded text: encoded as it is
  }
  // A receiver (or a proxy in front of it) that decodes once more must not see another path either.
  if (decoded !== value && (decoded === '.' || decoded === '..' || SEPARATOR.test(decoded)))
    return 'percent-decodes to a dot segment or a path separator';
  return null;
}

const shown = (v: string) => JSON.stringify(v.length > 64 ? `${v.slice(0, 64)}…` : v);

/**
 * Fills a template's {placeholders}, each URL-encoded. A value that fills a path segment must be
 * a segment of its own: not empty, not `.` or `..` and without `/ \ ? #`, also once percent-
 * decoded; otherwise the call is refused before anything is sent. Values in the query part only
 * need encoding.
 */
export function renderTarget(template: string, vars: Record<string, string>): Rendered {
  const q = template.indexOf('?');
  const pathPart = q < 0 ? template : template.slice(0, q);
  for (const [, name] of pathPart.matchAll(/\{(\w+)\}/g)) {
    const value = vars[name!] ?? '';
    const why = segmentProblem(value);
    if (why)
      return {
        ok: false,
        reason: `refused before sending: {${name}} ${shown(value)} ${why}, so it would address another path`,
      };
  }
  try {
    return { ok: true, target: template.replace(/\{(\w+)\}/g, (_, n: string) => encodeURIComponent(vars[n] ?? '')) };
  } catch {
    // encodeURIComponent throws on a lone surrogate: no URL can carry that value.
    return { ok: false, reason: 'refused before sending: a value is not valid Unicode and cannot be URL-encoded' };
  }
}

/** `HTTP 503 Service Unavailable`: the status and its standard reason, never the body. */
export const statusText = (status: number) => `HTTP ${status}${STATUS_CODES[status] ? ` ${STATUS_CODES[status]}` : ''}`;

/** A transport failure as its error code (ECONNREFUSED, ETIMEDOUT…), never its message with host and port. */
export function connectionText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code && /^[A-Z0-9_]{2,40}$/.test(e.code) ? e.code : (e?.name ?? 'Error');
}

const ATTEMPTS = / \(after \d+ (?:\w+ )?(?:attempts?|requests?)\)$/;
/**
 * An error with how many requests were sent for it: `HTTP 500 Internal Server Error (after 2
 * attempts)`, or `(after 4 restore requests)` where the requests of several calls are counted (a
 * rollback's rounds: "attempts" there read as the rollback's own 5 attempts, each of which may
 * send several requests, and a trial saw "after 10 restore attempts" beside a limit of 5). A count the error carried is replaced, never appended to. The count is what
 * reached the transport, so it matches the downstream's log of the item's Idempotency-Key.
 */
export function afterAttempts(error: string, n: number, what = ''): string {
  const unit = what ? `${what} request` : 'attempt';
  return `${error.replace(ATTEMPTS, '')} (after ${n} ${unit}${n === 1 ? '' : 's'})`;
}
