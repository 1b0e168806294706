// Canonical JSON (RFC 8785 / JCS) from the maintained `canonicalize` library: keys sorted by UTF-16
// code units, ECMAScript number form, no whitespace. A hash over a value is then the same after a
// round trip through Postgres jsonb, which does not keep key order. For every JSON value it writes
// exactly what the hand-written version before it did (test/unit/canonical-json.test.ts), so the
// audit chains and request hashes recorded earlier verify unchanged. Unlike that version it refuses
// what JSON cannot carry (NaN, Infinity, lone surrogates) instead of writing something else.
import canonicalize from 'canonicalize';

export function canonicalJson(value: unknown): string {
  // A top-level undefined has no JSON form: null, as JSON.stringify writes it inside an array.
  return canonicalize(value ?? null) ?? 'null';
}
