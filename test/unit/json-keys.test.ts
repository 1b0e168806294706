// A repeated key in a JSON object must be found wherever it is (JSON.parse would keep the last one
// silently), and nothing else may be taken for one: keys of sibling objects, strings that look like
// JSON, escaped spellings of one key.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findDuplicateKey } from '../../src/lib/json-keys.ts';

const find = (text: string) => {
  JSON.parse(text); // only valid JSON is ever scanned
  return findDuplicateKey(text, 'body');
};

describe('findDuplicateKey', () => {
  it.each([
    ['{"mode":"soft","reason":"x","mode":"hard"}', { key: 'mode', field: 'body' }],
    ['{"id":"app_1","\\u0069d":"site_1"}', { key: 'id', field: 'body' }],
    ['{"a":{"b":1,"b":2}}', { key: 'b', field: 'body.a' }],
    ['{"ids":["x",{"k":1},{"k":1,"k":2}]}', { key: 'k', field: 'body.ids.2' }],
    ['{"a b":[{"c":[1,2,{"d":0,"d":1}]}]}', { key: 'd', field: 'body["a b"].0.c.2' }],
    ['{"x":"\\"y\\":1,\\"x\\":2","x":3}', { key: 'x', field: 'body' }],
  ])('finds the repeat in %s', (text, want) => {
    expect(find(text)).toEqual(want);
  });

  it.each([
    '{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}',
    '{"s":"{\\"a\\":1,\\"a\\":2}","t":"},{,\\\\"}',
    '["a","a",{"a":1}]',
    '"{\\"a\\":1,\\"a\\":1}"',
    '{"":1,"\\"":2,"\\\\":3}',
  ])('finds none in %s', (text) => {
    expect(find(text)).toBeNull();
  });

  it('finds none in any JSON.stringify output, and the one repeat added to an object of it', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.jsonValue(), fc.nat(), (obj, extra, at) => {
        const text = JSON.stringify(obj);
        expect(find(text)).toBeNull();
        const keys = Object.keys(obj);
        if (!keys.length) return;
        const key = keys[at % keys.length]!;
        // The same key again at the end of the top object.
        const repeated = `${text.slice(0, -1)},${JSON.stringify(key)}:${JSON.stringify(extra) ?? 'null'}}`;
        expect(find(repeated)).toEqual({ key, field: 'body' });
      }),
      { numRuns: 500 },
    );
  });
});
