// Values for the hostile-input suite: well-formed ones generated from a schema (so that requests
// get past validation and reach the handlers), hostile ones (NUL, bidi, zero-width, lone
// surrogates, look-alikes, huge, out of range, wrongly typed, deeply nested), and mutations that
// put the second kind into the first. Everything is plain data: known IDs are symbolic picks
// ({ $pick, n }) and raw JSON snippets are markers, both resolved when the request is sent.
import fc from 'fast-check';
import { FIELD_POOLS, type Pool, type Schema } from './model.ts';

export interface Pick {
  $pick: Pool;
  n: number;
}

/** A JSON text that JSON.stringify cannot produce, substituted for its marker string. */
export const RAW_JSON: Record<string, () => string> = {
  deep10000: () => `${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}`,
  deepArray10000: () => `${'['.repeat(10_000)}${']'.repeat(10_000)}`,
  deep33: () => `${'['.repeat(33)}1${']'.repeat(33)}`,
  num1e400: () => '1e400',
  bigInteger: () => '123456789012345678901234567890',
  negZero: () => '-0',
  hugeString: () => JSON.stringify('x'.repeat(100_000)),
  escapedNul: () => '"a\\u0000b"',
  loneHigh: () => '"\\ud800"',
  loneLow: () => '"x\\udfff"',
  protoKey: () => '{"__proto__":{"polluted":true}}',
  constructorKey: () => '{"constructor":{"prototype":{"polluted":true}}}',
};
export const rawMarker = (name: string) => `\u0001RAW:${name}\u0001`;

const CYRILLIC_A = '\u0430';
export const HOSTILE_STRINGS = [
  '',
  ' ',
  'a\u0000b',
  '\u0000',
  'app_1\u200b',
  '\u202eevil',
  'tn_\u2066x\u2069',
  '\ufeffx',
  'x\u0085',
  'x\u001b[31m',
  'line\nbreak',
  'tab\there',
  'a\u2028b',
  '\ud800',
  'x\udfff',
  `${CYRILLIC_A}pp_00001_00`,
  'e\u0301',
  '../../etc/passwd',
  '..',
  '%00',
  '%',
  "'; DROP TABLE operations; --",
  '{id}',
  '${jndi:x}',
  'null',
  '-1',
  '1e400',
  'x'.repeat(201),
  'x'.repeat(2001),
  '\u{1F600}'.repeat(150),
  '\u00e9'.repeat(201),
  '\u{E0041}\u{E0042}',
];

export const hostileString = fc.oneof(
  { arbitrary: fc.constantFrom(...HOSTILE_STRINGS), weight: 6 },
  // Any code point (controls, surrogate halves, private use, noncharacters).
  { arbitrary: fc.string({ unit: 'binary', maxLength: 12 }), weight: 2 },
  { arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }), weight: 1 },
);

const hostileNumber = fc.constantFrom(
  -1,
  0,
  0.5,
  -0.5,
  2 ** 31 - 1,
  2 ** 31,
  -(2 ** 31) - 1,
  2 ** 53,
  Number.MAX_SAFE_INTEGER,
  1e308,
  -1e308,
  1e-300,
);

/** 40 levels: beyond the 32 the JSON parser allows, yet safe to JSON.stringify here. */
const nested = (n: number): unknown => (n === 0 ? 1 : { a: nested(n - 1) });

export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: hostileString, weight: 6 },
  { arbitrary: hostileNumber, weight: 3 },
  { arbitrary: fc.constantFrom(null, true, false, [], {}, [[]], [null], { a: { b: { c: 1 } } }), weight: 2 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 1 },
  { arbitrary: fc.constant(nested(40)), weight: 1 },
  { arbitrary: fc.constantFrom(...Object.keys(RAW_JSON)).map(rawMarker), weight: 2 },
);

const pick = (pool: Pool): fc.Arbitrary<Pick> => fc.nat(1_000).map((n) => ({ $pick: pool, n }));

/**
 * Strings matching a pattern. fast-check cannot generate from lookarounds: those are dropped from
 * the generator and the strings filtered by the whole pattern instead.
 */
function matching(pattern: string): fc.Arbitrary<string> {
  const re = new RegExp(pattern);
  try {
    return fc.stringMatching(re);
  } catch {
    const loose = pattern.replace(/\(\?[=!](?:[^()]|\([^()]*\))*\)/g, '');
    return fc.stringMatching(new RegExp(loose)).filter((x) => re.test(x));
  }
}

function stringArb(s: Schema): fc.Arbitrary<string> {
  const min = s.minLength ?? 0;
  const max = Math.max(min, Math.min(s.maxLength ?? 24, 24));
  if (s.pattern) return matching(s.pattern).filter((x) => x.length <= (s.maxLength ?? 1e9));
  switch (s.format) {
    case 'id':
      return fc.stringMatching(/^[a-z]{2,6}_[a-z0-9_]{1,14}$/);
    case 'uuid':
      return fc.uuid();
    case 'date-time':
      return fc.oneof(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        // RFC 3339 at its edges: leap seconds, extreme offsets and years, other spellings.
        fc.constantFrom(
          '2030-06-30T23:59:60Z',
          '9999-12-31T23:59:59-23:59',
          '9999-12-31T23:59:59.999Z',
          '0000-01-01T00:00:00Z',
          '0001-01-01T00:00:00+23:59',
          '2030-01-01t00:00:00z',
          '2030-01-01 00:00:00Z',
          '2030-01-01T00:00:00.123456789Z',
          '2030-02-29T00:00:00Z',
          '+275760-09-13T00:00:00.000Z',
        ),
      );
    case 'multiline-text':
      return fc.string({ minLength: min, maxLength: max, unit: fc.constantFrom('a', 'b', ' ', '\n', 'é', '1') });
    default:
      return fc.string({ minLength: min, maxLength: max });
  }
}

/** A value the schema accepts (mostly): what a careful client would send. */
export function validValue(
  schema: Schema,
  field: string,
  resolve: (s: Schema) => Schema,
  depth = 0,
): fc.Arbitrary<unknown> {
  const s = resolve(schema);
  if (s.anyOf || s.oneOf) return fc.oneof(...(s.anyOf ?? s.oneOf)!.map((b) => validValue(b, field, resolve, depth)));
  if (s.enum) return fc.constantFrom(...s.enum);
  if (s.const !== undefined) return fc.constant(s.const);
  const pool = FIELD_POOLS[field];
  switch (s.type) {
    case 'string':
      return pool
        ? fc.oneof({ arbitrary: pick(pool), weight: 3 }, { arbitrary: stringArb(s), weight: 1 })
        : stringArb(s);
    case 'integer': {
      const min = s.minimum ?? -1000;
      const max = Math.min(s.maximum ?? 1000, Number.MAX_SAFE_INTEGER);
      return fc.oneof(fc.integer({ min, max: Math.min(max, min + 1000) }), fc.constantFrom(min, max));
    }
    case 'number':
      return fc.double({ min: s.minimum ?? -1e6, max: s.maximum ?? 1e6, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const item = validValue(s.items ?? {}, field, resolve, depth + 1);
      const minLength = s.minItems ?? 0;
      const maxLength = Math.max(minLength, Math.min(s.maxItems ?? 4, 4));
      // Known values are picked when the request is sent; a list that must hold distinct values
      // is marked, and its duplicates dropped once the picks are known.
      return s.uniqueItems
        ? fc
            .uniqueArray(item, { minLength, maxLength, selector: (v) => JSON.stringify(v) })
            .map(($unique) => ({ $unique }))
        : fc.array(item, { minLength, maxLength });
    }
    case 'object':
    default: {
      if (!s.properties && !s.additionalProperties) return fc.jsonValue({ maxDepth: 2 });
      const model = Object.fromEntries(
        Object.entries(s.properties ?? {}).map(([k, v]) => [k, validValue(v, k, resolve, depth + 1)]),
      );
      const record = fc.record(model, { requiredKeys: s.required ?? [] });
      if (typeof s.additionalProperties !== 'object' || depth > 4) return record;
      const extra = fc.dictionary(
        fc.stringMatching(/^[a-z]{1,8}$/),
        validValue(s.additionalProperties, '', resolve, depth + 1),
        { maxKeys: 3 },
      );
      return fc.tuple(record, extra).map(([r, e]) => ({ ...e, ...r }));
    }
  }
}

export type Mutation =
  | { op: 'replace'; at: number; value: unknown }
  | { op: 'delete'; at: number }
  | { op: 'add'; at: number; key: string; value: unknown }
  | { op: 'rename'; at: number };

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('replace' as const), at: fc.nat(), value: hostileValue }), weight: 6 },
  { arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat() }), weight: 1 },
  {
    arbitrary: fc.record({
      op: fc.constant('add' as const),
      at: fc.nat(),
      key: fc.oneof(hostileString, fc.constantFrom('skipBadIds', 'force', '__proto__', 'constructor')),
      value: hostileValue,
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ op: fc.constant('rename' as const), at: fc.nat() }), weight: 1 },
);

/** Applies a mutation at the `at`-th node (in a pre-order walk) of a copy of `value`. */
export function mutate(value: unknown, m: Mutation): unknown {
  const root = { v: structuredClone<unknown>(value) };
  const nodes: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (parent: Record<string, unknown> | unknown[], key: string | number) => {
    nodes.push({ parent, key });
    const v = (parent as Record<string, unknown>)[key as string];
    if (v && typeof v === 'object' && !('$pick' in v)) {
      if (Array.isArray(v)) v.forEach((_, i) => walk(v, i));
      else for (const k of Object.keys(v)) walk(v as Record<string, unknown>, k);
    }
  };
  walk(root, 'v');
  const { parent, key } = nodes[m.at % nodes.length]!;
  const target = (parent as Record<string, unknown>)[key as string];
  switch (m.op) {
    case 'replace':
      (parent as Record<string, unknown>)[key as string] = m.value;
      break;
    case 'delete':
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else if (parent !== root) delete parent[key as string];
      break;
    case 'add':
      if (target && typeof target === 'object' && !Array.isArray(target))
        (target as Record<string, unknown>)[m.key] = m.value;
      else if (Array.isArray(target)) target.push(m.value);
      break;
    case 'rename':
      // A misspelling: drop the last character of a field name.
      if (!Array.isArray(parent) && parent !== root && typeof key === 'string' && key.length > 1) {
        parent[key.slice(0, -1)] = parent[key];
        delete parent[key];
      }
      break;
  }
  return root.v;
}
