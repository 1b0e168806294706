// The switch from the hand-written canonical JSON to the RFC 8785 library changes no hash: audit
// chains and idempotency request hashes written before it verify the same. The former
// implementation is kept here only as the reference the property compares against.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import canonicalize from 'canonicalize';
import { canonicalJson } from '../../src/lib/canonical-json.ts';

function former(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(former).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${former(obj[k])}`).join(',')}}`;
}

describe('canonicalJson', () => {
  it('writes exactly what the former implementation wrote, for every JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(v)).toBe(former(v));
      }),
      { numRuns: 2_000 },
    );
    fc.assert(
      fc.property(fc.jsonValue({ stringUnit: 'grapheme' }), (v) => {
        expect(canonicalJson(v)).toBe(former(v));
      }),
      { numRuns: 1_000 },
    );
  });

  it('sorts keys by UTF-16 code units and writes numbers the ECMAScript way (RFC 8785)', () => {
    expect(
      canonicalJson({ b: 1, a: [1e21, 0.1, -0, 1.5e-7], '\u{1F600}': 'x', '\uFFFD': 'y', undefinedKey: undefined }),
    ).toBe('{"a":[1e+21,0.1,0,1.5e-7],"b":1,"\u{1F600}":"x","\uFFFD":"y"}');
    expect(canonicalJson(undefined)).toBe('null');
  });

  it('refuses what JSON cannot carry instead of hashing something else', () => {
    expect(() => canonicalJson({ rate: Number.NaN })).toThrow(/NaN/);
    expect(() => canonicalJson({ s: '\ud800' })).toThrow(/surrogate/i);
  });
});

describe('canonicalJson of a flat object (its fast path)', () => {
  // The library is the reference: a flat object (a registry snapshot's shape) must hash the same
  // whichever path wrote it, or a snapshot written before the fast path would fail verification.
  const primitive = fc.oneof(
    fc.string({ unit: 'grapheme' }),
    fc.string({ unit: 'binary' }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
  );
  /** canonicalJson writes what the library writes, or refuses what it refuses with its message. */
  const writesAsLibrary = (obj: Record<string, unknown>) => {
    let expected: string | Error;
    try {
      expected = canonicalize(obj) ?? 'null';
    } catch (e) {
      expected = e as Error;
    }
    if (expected instanceof Error) expect(() => canonicalJson(obj)).toThrow(expected.message);
    else expect(canonicalJson(obj)).toBe(expected);
  };
  it('writes what the library writes, for any keys and primitive values', () => {
    fc.assert(fc.property(fc.dictionary(fc.string({ unit: 'binary' }), primitive), writesAsLibrary), {
      numRuns: 3_000,
    });
  });

  it('writes what the library writes for objects built with their keys in order (JSON.stringify writes those)', () => {
    // Integer-like keys too: Object.keys lists them first, in numeric order ("9" before "10"), which
    // is not the canonical order, so such an object must not be written in its own key order.
    const key = fc.oneof(fc.string({ unit: 'binary' }), fc.nat({ max: 200 }).map(String));
    fc.assert(
      fc.property(fc.dictionary(key, primitive), (dict) => {
        writesAsLibrary(Object.fromEntries(Object.entries(dict).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))));
      }),
      { numRuns: 3_000 },
    );
    expect(canonicalJson({ 9: 'a', 10: 'b', x: 1 })).toBe('{"10":"b","9":"a","x":1}');
  });

  it('leaves nesting, toJSON, NaN and lone surrogates to the library', () => {
    expect(canonicalJson({ b: { d: 1, c: [2, { f: 0, e: 'x' }] }, a: 'y' })).toBe(
      '{"a":"y","b":{"c":[2,{"e":"x","f":0}],"d":1}}',
    );
    expect(canonicalJson({ at: new Date('2026-12-06T00:00:00.000Z') })).toBe('{"at":"2026-12-06T00:00:00.000Z"}');
    expect(canonicalJson(Object.assign(Object.create(null) as object, { b: 1, a: 2 }))).toBe('{"a":2,"b":1}');
    expect(() => canonicalJson({ rate: Number.POSITIVE_INFINITY })).toThrow(/Infinity/);
    expect(() => canonicalJson({ '\udc00': 1 })).toThrow(/surrogate/i);
  });
});
