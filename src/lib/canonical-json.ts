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

/** The keys in UTF-16 code unit order; most objects built here already are (no sort, no copy). */
function sorted(keys: string[]): string[] {
  for (let k = 1; k < keys.length; k++) if (keys[k - 1]! > keys[k]!) return keys.sort();
  return keys;
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
  let out = '';
  for (const key of sorted(Object.keys(obj))) {
    const v = obj[key];
    if (v === undefined) continue;
    let text: string;
    if (typeof v === 'string') {
      if (!wellFormed(v)) return undefined;
      text = JSON.stringify(v);
    } else if (typeof v === 'number') {
      if (!Number.isFinite(v)) return undefined;
      text = JSON.stringify(v);
    } else if (typeof v === 'boolean' || v === null) text = String(v);
    else return undefined;
    if (!wellFormed(key)) return undefined;
    out += `${out ? ',' : ''}${JSON.stringify(key)}:${text}`;
  }
  return `{${out}}`;
}
