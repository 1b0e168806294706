// Canonical JSON (RFC 8785 / JCS) from the maintained `canonicalize` library: keys sorted by UTF-16
// code units, ECMAScript number form, no whitespace. A hash over a value is then the same after a
// round trip through Postgres jsonb, which does not keep key order. For every JSON value it writes
// exactly what the hand-written version before it did (test/unit/canonical-json.test.ts), so the
// audit chains and request hashes recorded earlier verify unchanged. Unlike that version it refuses
// what JSON cannot carry (NaN, Infinity, lone surrogates) instead of writing something else.
import canonicalize from 'canonicalize';

export function canonicalJson(value: unknown): string {
  if (value !== null && typeof value === 'object') {
    const flat = flatObject(value);
    if (flat !== undefined) return flat;
  }
  // A top-level undefined has no JSON form: null, as JSON.stringify writes it inside an array.
  return canonicalize(value ?? null) ?? 'null';
}

/** Whether the keys are in UTF-16 code unit order already (most objects built here are). */
function inOrder(keys: string[]): boolean {
  for (let k = 1; k < keys.length; k++) if (keys[k - 1]! > keys[k]!) return false;
  return true;
}

/** No lone surrogate (ES2024's String.prototype.isWellFormed, in Node 20 and later; TypeScript's lib here is older). */
const wellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * A plain object whose values are all strings, finite numbers, booleans or null (a registry
 * snapshot: one per item of a delete): the same text the library writes, without its per-value
 * recursion, Set and temporary arrays (~21% of what a waves run allocated, `npm run bench --
 * waves`). Anything else (nesting, toJSON, NaN, a lone surrogate, a symbol) goes to the library,
 * which writes or refuses it.
 */
function flatObject(value: object): string | undefined {
  const proto: unknown = Object.getPrototypeOf(value);
  if ((proto !== Object.prototype && proto !== null) || 'toJSON' in value) return undefined;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj);
  for (const key of keys) {
    const v = obj[key];
    if (v === undefined || typeof v === 'boolean' || v === null) continue;
    if (typeof v === 'string' ? !wellFormed(v) : typeof v !== 'number' || !Number.isFinite(v)) return undefined;
    if (!wellFormed(key)) return undefined;
  }
  // Keys already in order: JSON.stringify writes them in that order (Object.keys's), each value as
  // the library would, and leaves out the undefined ones, in one native pass and one string (the
  // pieces joined below were ~15% of what a waves run allocated, `npm run bench -- waves`).
  if (inOrder(keys)) return JSON.stringify(obj);
  let out = '';
  for (const key of keys.sort()) {
    const v = obj[key];
    if (v === undefined) continue;
    out += `${out ? ',' : ''}${JSON.stringify(key)}:${JSON.stringify(v)}`;
  }
  return `{${out}}`;
}
