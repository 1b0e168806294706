// Reads a streamed ID list (NDJSON or plain text, one ID per line) without a JavaScript string per
// ID where it can. A line that holds a plain ID — printable ASCII without quote or backslash, at
// most MAX_ID_LENGTH long — is copied as bytes into a packed batch, the form that is hashed and
// written by COPY; every other line is decoded and read by the general rules (JSON strings with
// escapes, {"id": …} objects, non-ASCII IDs, and every invalid line, so that errors are the same).
// Why: the general path made ~400 bytes of short-lived strings and objects per ID; enough of them
// outlived a young-generation collection to grow the API's old generation by ~60 MB during a
// 1M-ID upload before a full collection ran (the API's peak RSS, `npm run bench -- plan`).
// Line numbers, trimming, UTF-8 checks and limits are lineBatches' (lib/lines.ts).
import type { Readable } from 'node:stream';
import { lineTooLong, utf8Parts, type Line, type LineLimits } from '../../lib/lines.ts';
import { MAX_ID_LENGTH } from '../../lib/schemas.ts';

/** IDs as bytes, each followed by a line feed; only printable ASCII other than `"` and `\`. */
export interface PackedIds {
  packed: true;
  count: number;
  bytes: Buffer;
}

/** A batch of IDs in submission order: decoded strings (still to be validated), or packed valid ones. */
export type IdBatch = string[] | PackedIds;

export const isPacked = (b: IdBatch): b is PackedIds => !Array.isArray(b);

export interface IdStreamOptions {
  format: 'ndjson' | 'text';
  /** The ID a line that is not plain stands for (may throw an error naming the line). */
  slowId: (line: Line) => string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const isBlank = (b: number) => b === 0x20 || b === 0x09 || b === 0x0d;

/**
 * The first non-blank line (an NDJSON upload's spec; undefined for an empty body) and the batches
 * of IDs on the lines after it; with `head: false` every line is an ID.
 */
export async function readIdStream(
  stream: Readable,
  limits: LineLimits,
  o: IdStreamOptions & { head: boolean },
): Promise<{ head: Line | undefined; batches: AsyncGenerator<IdBatch> }> {
  // The generator yields the head line first (and nothing else as a Line), then only batches.
  const it = idBatches(stream, limits, o) as AsyncGenerator<IdBatch>;
  if (!o.head) return { head: undefined, batches: it };
  const first = await it.next();
  return { head: first.done ? undefined : (first.value as unknown as Line), batches: it };
}

async function* idBatches(
  stream: Readable,
  limits: LineLimits,
  o: IdStreamOptions & { head: boolean },
): AsyncGenerator<IdBatch | Line> {
  const quoted = o.format === 'ndjson' ? 1 : 0;
  let wantHead = o.head;
  let carry: Buffer = Buffer.alloc(0); // an unfinished line
  let n = 0;
  // Output in submission order: finished parts, and the part being filled (packed or strings).
  let ready: IdBatch[] = [];
  let readyIds = 0;
  let slow: string[] = [];
  let scratch = Buffer.alloc(0);
  let from = 0; // start of the packed part being filled in `scratch`
  let at = 0;
  let packedCount = 0;

  const flushPacked = () => {
    if (packedCount === 0) return;
    ready.push({ packed: true, count: packedCount, bytes: scratch.subarray(from, at) });
    readyIds += packedCount;
    packedCount = 0;
    from = at;
  };
  const flushSlow = () => {
    if (slow.length === 0) return;
    ready.push(slow);
    readyIds += slow.length;
    slow = [];
  };

  /** One line, [s, e) of buf, trimmed of ASCII blanks; line number n. */
  const line = (buf: Buffer, s: number, e: number): Line | undefined => {
    while (s < e && isBlank(buf[s]!)) s++;
    while (e > s && isBlank(buf[e - 1]!)) e--;
    if (s === e) return undefined;
    if (wantHead) {
      wantHead = false;
      return { n, text: buf.toString('utf8', s, e) };
    }
    const a = s + quoted;
    const b = e - quoted;
    if (b > a && b - a <= MAX_ID_LENGTH && (!quoted || (buf[s] === QUOTE && buf[e - 1] === QUOTE))) {
      // Validated while copied; a byte outside the plain set rewinds to the general path.
      let k = at;
      let i = a;
      for (; i < b; i++) {
        const c = buf[i]!;
        if (c < 0x21 || c > 0x7e || c === QUOTE || c === BACKSLASH) break;
        scratch[k++] = c;
      }
      if (i === b) {
        flushSlow();
        scratch[k++] = 0x0a;
        at = k;
        packedCount++;
        return undefined;
      }
    }
    flushPacked();
    slow.push(o.slowId({ n, text: buf.toString('utf8', s, e) }));
    return undefined;
  };

  for await (const part of utf8Parts(stream, limits, () => n)) {
    const buf = carry.length ? Buffer.concat([carry, part]) : part;
    // Packed IDs of this chunk: never longer than the chunk's lines (an ID, then a line feed).
    scratch = Buffer.allocUnsafe(buf.length);
    from = at = 0;
    let start = 0;
    for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, start)) {
      n++;
      const head = line(buf, start, i);
      if (head) yield head;
      start = i + 1;
    }
    flushPacked();
    carry = Buffer.from(buf.subarray(start));
    if (carry.length > limits.maxLineBytes) throw lineTooLong(n + 1, limits);
    if (readyIds + slow.length >= limits.batchSize) {
      flushSlow();
      for (const r of ready) yield r;
      ready = [];
      readyIds = 0;
    }
  }
  if (carry.length) {
    n++;
    scratch = Buffer.allocUnsafe(carry.length + 1);
    from = at = 0;
    const head = line(carry, 0, carry.length);
    if (head) yield head;
    flushPacked();
  }
  flushSlow();
  for (const r of ready) yield r;
}
