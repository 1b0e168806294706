// The byte-level ID reader (id-stream.ts) must read every upload exactly as the general line
// reader does: the same IDs in the same order, the same COPY rows, the same Idempotency hash and
// the same error (code, line, details), whatever the chunking of the body; and whether the list
// holds a duplicate (IntakeResult.distinct) must be the truth, whichever form each ID came in.
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lineBatches, parseJsonLine, type Line, type LineLimits } from '../../src/lib/lines.ts';
import { readIdStream } from '../../src/modules/operations/id-stream.ts';
import { ndjsonLineId, readIds } from '../../src/modules/operations/intake.ts';

const LIMITS: LineLimits = { maxBytes: 1 << 20, maxLineBytes: 4096, batchSize: 7 };

const chunked = (body: Buffer, cuts: number[]) => {
  const at = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, body.length]) {
    if (c > prev) parts.push(body.subarray(prev, c));
    prev = c;
  }
  return Readable.from(parts);
};

type Outcome =
  | { ok: true; head?: unknown; count: number; idsHash: string; distinct: boolean; rows: string }
  | { ok: false; err: unknown };

/** Whether intake's `distinct` is the truth about the IDs it wrote (one `ord\tid` row each). */
const distinctIsTrue = (o: Outcome) => {
  if (!o.ok) return;
  const ids = o.rows
    .split('\n')
    .filter(Boolean)
    .map((r) => r.slice(r.indexOf('\t') + 1));
  expect(ids).toHaveLength(o.count);
  expect(o.distinct).toBe(new Set(ids).size === ids.length);
};

const tooMany = (o: Outcome) => !o.ok && (o.err as { code?: string }).code === 'TOO_MANY_IDS';

const errorOf = (e: unknown) => {
  const x = e as { code?: string; statusCode?: number; message?: string; details?: unknown };
  return { code: x.code, status: x.statusCode, message: x.message, details: x.details };
};

async function consume(head: Promise<unknown>, batches: () => AsyncIterable<never>, maxIds: number): Promise<Outcome> {
  const rows: string[] = [];
  try {
    const h = await head;
    const r = await readIds(batches(), maxIds, async (b) => void rows.push(b.toString('utf8')));
    return { ok: true, head: h, ...r, rows: rows.join('') };
  } catch (err) {
    return { ok: false, err: errorOf(err) };
  }
}

/** The general path: every line decoded, NDJSON lines read by ndjsonLineId. */
async function general(stream: Readable, format: 'ndjson' | 'text', maxIds: number): Promise<Outcome> {
  const it = lineBatches(stream, LIMITS)[Symbol.asyncIterator]();
  let rest: Line[] = [];
  const head = (async () => {
    if (format === 'text') return undefined;
    const first = await it.next();
    if (first.done) return undefined;
    rest = first.value.slice(1);
    return parseJsonLine(first.value[0]!);
  })();
  async function* batches() {
    const read = (l: Line) => (format === 'ndjson' ? ndjsonLineId(l) : l.text);
    if (rest.length) yield rest.map(read);
    for (let n = await it.next(); !n.done; n = await it.next()) yield n.value.map(read);
  }
  return consume(head, batches as never, maxIds);
}

async function bytewise(stream: Readable, format: 'ndjson' | 'text', maxIds: number): Promise<Outcome> {
  let batches: AsyncIterable<unknown> = (async function* () {})();
  const head = (async () => {
    const r = await readIdStream(stream, LIMITS, {
      format,
      head: format === 'ndjson',
      slowId: format === 'ndjson' ? ndjsonLineId : (l) => l.text,
    });
    batches = r.batches;
    return r.head ? parseJsonLine(r.head) : undefined;
  })();
  return consume(head, (() => batches) as never, maxIds);
}

// Lines people send, and lines that must be refused.
const plainId = fc.stringMatching(/^[a-z_][a-z0-9_:./-]{0,12}$/);
const EDGES = [
  '',
  '   ',
  '"app_é"',
  '"app_\\u00e9"',
  '"a\\\\b"',
  '"a"b"',
  '""',
  '"a b"',
  '"a\tb"',
  '"\u200bapp"',
  `"${'x'.repeat(200)}"`,
  `"${'x'.repeat(201)}"`,
  '{"id":1}',
  '[1]',
  'not json',
  '"😀"',
  'a"b',
  'a\\b',
];
const line = fc.oneof(
  { weight: 6, arbitrary: plainId.map((s) => `"${s}"`) },
  { weight: 2, arbitrary: plainId.map((s) => `  "${s}"\r`) },
  { weight: 1, arbitrary: plainId.map((s) => `{"id":"${s}"}`) },
  { weight: 1, arbitrary: plainId },
  {
    weight: 1,
    arbitrary: fc.constantFrom(...EDGES),
  },
);
const body = fc.record({
  lines: fc.array(line, { maxLength: 40 }),
  cuts: fc.array(fc.nat(4000), { maxLength: 8 }),
  trailingNewline: fc.boolean(),
  invalidByteAt: fc.option(fc.nat(4000), { nil: undefined }),
});

// A body with an invalid byte has only plain lines otherwise: with two faults, which one is found
// first depends on where the chunks and batches end, in either reader.
const build = (head: string[], lines: string[], trailingNewline: boolean, invalidByteAt?: number) => {
  const kept = invalidByteAt === undefined ? lines : lines.filter((l) => /^"[a-z0-9_:./-]+"$/.test(l));
  let b = Buffer.from([...head, ...kept].join('\n') + (trailingNewline ? '\n' : ''));
  if (invalidByteAt !== undefined && b.length) {
    const at = invalidByteAt % b.length;
    b = Buffer.concat([b.subarray(0, at), Buffer.from([0xff]), b.subarray(at)]);
  }
  return b;
};

describe('id-stream: the byte reader reads as the general reader does', () => {
  it('NDJSON (spec line first): same head, IDs, rows, hash and errors for any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(body, fc.constantFrom(5, 1_000), async (b, maxIds) => {
        const bytes = build(['{"targetType":"app"}'], b.lines, b.trailingNewline, b.invalidByteAt);
        const want = await general(chunked(bytes, []), 'ndjson', maxIds);
        const got = await bytewise(chunked(bytes, b.cuts), 'ndjson', maxIds);
        distinctIsTrue(got);
        if (tooMany(want) === tooMany(got)) return void expect(got).toEqual(want);
        // Two faults, too many IDs and a bad line: which one is met first depends on where a
        // reader's batches end. The other reader's answer is then the bad line, as without a limit.
        expect(tooMany(want) ? got : want).toEqual(await general(chunked(bytes, []), 'ndjson', 1_000));
      }),
      {
        numRuns: 400,
        // Found by CI: 6 IDs over a limit of 5, then a line that is not JSON.
        examples: [
          [
            {
              lines: ['"a"', '  "a"\r', '"a"', '  "a"\r', '"a"', '"_"', '_'],
              cuts: [],
              trailingNewline: false,
              invalidByteAt: undefined,
            },
            5,
          ],
        ],
      },
    );
  });

  it('plain text: same IDs, rows, hash and errors for any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(body, async (b) => {
        const bytes = build([], b.lines, b.trailingNewline, b.invalidByteAt);
        const want = await general(chunked(bytes, []), 'text', 1_000);
        const got = await bytewise(chunked(bytes, b.cuts), 'text', 1_000);
        distinctIsTrue(got);
        expect(got).toEqual(want);
      }),
      { numRuns: 400 },
    );
  });

  it.each(EDGES.map((e) => [JSON.stringify(e), e]))(
    'reads the line %s between plain ones as the general reader does',
    async (_, edge) => {
      for (const format of ['ndjson', 'text'] as const) {
        const lines = [...(format === 'ndjson' ? ['{"targetType":"app"}'] : []), '"app_1"', edge, 'app_2', '"app_3"'];
        const bytes = Buffer.from(lines.join('\n'));
        const want = await general(chunked(bytes, []), format, 100);
        expect(await bytewise(chunked(bytes, [3, 17, 30]), format, 100)).toEqual(want);
      }
    },
  );

  it('packs plain IDs without decoding them, and numbers COPY rows across batches', async () => {
    const lines = Array.from({ length: 25 }, (_, i) => `"app_${i}"`);
    const { batches } = await readIdStream(
      Readable.from([Buffer.from(['{"targetType":"app"}', ...lines, '"app_é"', '"app_25"'].join('\n'))]),
      LIMITS,
      { format: 'ndjson', head: true, slowId: ndjsonLineId },
    );
    const kinds: string[] = [];
    const rows: string[] = [];
    async function* seen() {
      for await (const x of batches) {
        kinds.push(Array.isArray(x) ? `strings:${x.length}` : `packed:${x.count}`);
        yield x;
      }
    }
    const r = await readIds(seen(), 100, async (b) => void rows.push(b.toString()));
    expect(kinds).toEqual(['packed:25', 'strings:1', 'packed:1']);
    expect(r.count).toBe(27);
    const all = rows.join('').split('\n');
    expect(all[0]).toBe('0\tapp_0');
    expect(all[24]).toBe('24\tapp_24');
    expect(all[25]).toBe('25\tapp_é');
    expect(all[26]).toBe('26\tapp_25');
  });

  it('refuses an NDJSON line with a bare quote inside its string (it is not JSON)', async () => {
    const r = await bytewise(Readable.from([Buffer.from('{"targetType":"app"}\n"a"b"\n')]), 'ndjson', 10);
    expect(r).toMatchObject({ ok: false, err: { code: 'MALFORMED_NDJSON', details: { line: 2 } } });
  });
});
