// The hot paths' array literals (lib/pg-array.ts) must mean to PostgreSQL exactly what the arrays
// node-postgres encodes itself meant: the same values, nulls and element boundaries, whatever the
// strings hold (quotes, backslashes, commas, braces, the word NULL, line breaks, any Unicode).
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { intArray, textArray } from '../../src/lib/pg-array.ts';
import { createTestDatabase } from '../support/db.ts';

let client: pg.Client;
beforeAll(async () => {
  client = new pg.Client({ connectionString: await createTestDatabase() });
  await client.connect();
});
afterAll(() => client.end());

// PostgreSQL text cannot hold NUL; neither encoding can send one.
const text = fc.string({ unit: 'grapheme' }).map((s) => s.replaceAll('\u0000', ''));
const tricky = fc.constantFrom(
  '',
  'NULL',
  'null',
  '"',
  '\\',
  '\\"',
  'a,b',
  '{x}',
  ' lead',
  'trail ',
  'line\nbreak',
  '\t',
);
const element = fc.option(fc.oneof(text, tricky), { nil: null });

describe('textArray / intArray', () => {
  it('sends the same text[] as node-postgres, value for value', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(element, { maxLength: 12 }), async (values) => {
        const r = await client.query<{ ours: (string | null)[]; theirs: (string | null)[] }>(
          'SELECT $1::text[] AS ours, $2::text[] AS theirs',
          [textArray(values), values],
        );
        expect(r.rows[0]!.ours).toEqual(values);
        expect(r.rows[0]!.theirs).toEqual(values);
      }),
      { numRuns: 300 },
    );
  });

  it('sends the same int[] and bigint[], nulls included', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.option(fc.integer(), { nil: null }), { maxLength: 12 }), async (values) => {
        const r = await client.query<{ i: (number | null)[]; b: (string | null)[] }>(
          'SELECT $1::int[] AS i, $1::bigint[] AS b',
          [intArray(values)],
        );
        expect(r.rows[0]!.i).toEqual(values);
        expect(r.rows[0]!.b).toEqual(values.map((v) => (v === null ? null : String(v))));
      }),
      { numRuns: 200 },
    );
    const r = await client.query<{ b: string[] }>('SELECT $1::bigint[] AS b', [intArray([9007199254740993n])]);
    expect(r.rows[0]!.b).toEqual(['9007199254740993']);
  });

  it('writes the empty array, and the plain case as one quoted list', () => {
    expect(textArray([])).toBe('{}');
    expect(intArray([])).toBe('{}');
    expect(textArray(['app_1', 'app_2'])).toBe('{"app_1","app_2"}');
    expect(textArray(['a"b', null])).toBe('{"a\\"b",NULL}');
    expect(intArray([1, null, 3])).toBe('{1,NULL,3}');
  });
});
