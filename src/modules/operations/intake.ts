// Reads submitted IDs a batch at a time, validates and hashes them (for Idempotency-Key), and
// hands each batch on to be staged (staging.ts): the API never holds a 1M-ID upload in memory.
import { createHash, type Hash } from 'node:crypto';
import { BadRequestError, TooManyIdsError } from '../../lib/errors.ts';
import { parseJsonLine, type Line } from '../../lib/lines.ts';
import { MAX_ID_LENGTH } from '../../lib/schemas.ts';
import { isValidText, longerThan, textProblem } from '../../lib/text.ts';
import { DistinctIds } from './distinct-ids.ts';
import { isPacked, type IdBatch, type PackedIds } from './id-stream.ts';

export const MAX_INLINE_IDS = 100_000;
export const MAX_STREAMED_IDS = 1_000_000;
const REPORTED_INVALID = 100;
const DIGITS = 10;

export type IdBatches = AsyncIterable<IdBatch>;

export interface IntakeResult {
  count: number;
  /** sha256 over the IDs in order (combined with the spec by the caller). */
  idsHash: string;
  /** No ID was submitted twice, for certain (distinct-ids.ts); false may still mean none was. */
  distinct: boolean;
}

/** Inline JSON IDs as batches. */
export async function* inlineBatches(ids: string[], size = 10_000): AsyncGenerator<string[]> {
  for (let i = 0; i < ids.length; i += size) yield ids.slice(i, i + size);
}

/** The ID on an NDJSON line: a JSON string ("app_1") or an object {"id": "app_1"}. */
export function ndjsonLineId(line: Line): string {
  const t = line.text;
  // Fast path for the common `"id"` line; anything else goes through JSON.parse.
  if (t.length > 1 && t.charCodeAt(0) === 34 && t.charCodeAt(t.length - 1) === 34 && !/["\\]/.test(t.slice(1, -1)))
    return t.slice(1, -1);
  const v = parseJsonLine(line);
  if (typeof v === 'string') return v;
  if (
    v &&
    typeof v === 'object' &&
    !Array.isArray(v) &&
    typeof (v as { id?: unknown }).id === 'string' &&
    Object.keys(v).length === 1
  ) {
    return (v as { id: string }).id;
  }
  throw new BadRequestError('INVALID_ID', `Line ${line.n} must be a JSON string or {"id": "..."}`, {
    line: line.n,
  });
}

/** Where validated IDs go: COPY-text rows (`ord\tid\n` lines), a batch at a time. */
export type RowSink = (rows: Buffer) => Promise<void>;

/** IDs handed to one sink call: about one short COPY per 10,000. */
const ROWS_PER_WRITE = 10_000;

/**
 * Reads every ID, hashes it and hands the valid ones to `sink` about 10,000 at a time, while the
 * next ones are read (at most one write in flight). Invalid IDs (not text, empty, too long,
 * whitespace/control characters) are collected (first 100) and refused together after the body
 * was read.
 */
export async function readIds(
  batches: AsyncIterable<IdBatch>,
  maxIds: number,
  sink: RowSink,
  hash: Hash = createHash('sha256'),
): Promise<IntakeResult> {
  let count = 0;
  const seen = new DistinctIds();
  const invalid = new InvalidIds();
  let writing: Promise<void> | undefined;
  let rows: Buffer[] = [];
  let rowIds = 0;
  const write = async () => {
    const out = rows.length === 1 ? rows[0]! : Buffer.concat(rows);
    rows = [];
    rowIds = 0;
    await writing;
    writing = sink(out);
    // Awaited before the next write or at the end; until then its failure must not go unhandled.
    writing.catch(() => undefined);
  };
  try {
    for await (const batch of batches) {
      const size = isPacked(batch) ? batch.count : batch.length;
      if (count + size > maxIds) {
        throw new TooManyIdsError(
          maxIds,
          'that is the most one operation takes; split the list into several operations',
        );
      }
      let part: Buffer | undefined;
      if (isPacked(batch)) {
        // Valid by construction (id-stream.ts): hashed as read, numbered into COPY rows.
        hash.update(batch.bytes);
        seen.addPacked(batch.bytes);
        if (!invalid.count) part = copyRows(batch, count);
        count += batch.count;
      } else {
        let out = '';
        let hashed = '';
        for (const id of batch) {
          if (invalid.found(id, count)) {
            count++;
            continue;
          }
          seen.addString(id);
          hashed += `${id}\n`;
          out += `${count}\t${id.includes('\\') ? id.replace(/\\/g, '\\\\') : id}\n`;
          count++;
        }
        // One hash update per batch: per-ID updates cost a second per million IDs.
        hash.update(hashed);
        if (out) part = Buffer.from(out);
      }
      // A list with invalid IDs is refused once read: writing the rest of it would be wasted.
      if (invalid.count || !part) continue;
      rows.push(part);
      rowIds += size;
      if (rowIds >= ROWS_PER_WRITE) await write();
    }
    if (rows.length && !invalid.count) await write();
    await writing;
  } catch (err) {
    // Let a write in flight finish before the caller cleans up after it.
    await writing?.catch(() => undefined);
    throw err;
  }
  invalid.refuse();
  if (count === 0) throw emptyIdList('ids');
  return { count, idsHash: hash.digest('hex'), distinct: seen.distinct };
}

/** 400 EMPTY_ID_LIST: a list with no ID, named by `field` (`body.ids` inline, `ids` streamed). */
const emptyIdList = (field: string) =>
  new BadRequestError('EMPTY_ID_LIST', 'No IDs were submitted: list at least one ID', { field });

/** Invalid IDs met while reading a list: all counted, the first 100 kept, refused together. */
class InvalidIds {
  count = 0;
  private readonly listed: ({ index: number; id: unknown; problem: string } & Record<string, unknown>)[] = [];

  /** Whether `id` (at `index` in the list) is invalid; if so it is counted (and listed). */
  found(id: unknown, index: number): boolean {
    const problem = idProblem(id);
    if (!problem) return false;
    this.count++;
    if (this.listed.length < REPORTED_INVALID) this.listed.push({ index, ...shown(id), ...problem });
    return true;
  }

  /** 400 INVALID_IDS naming them, if any was found. */
  refuse(): void {
    if (!this.count) return;
    const first = this.listed[0]!;
    throw new BadRequestError(
      'INVALID_IDS',
      `${this.count} submitted ID(s) are not valid; the first, at index ${first.index}, ${first.problem}`,
      { invalidCount: this.count, invalid: this.listed },
    );
  }
}

/**
 * The inline `ids` of a JSON body (a delete, a restore, a purge), checked before anything else about
 * the body (json-body.ts, on routes with `inlineIds`), which would stop at the first problem: every
 * invalid ID — NUL and lone surrogates included — is refused at once, each by its index
 * (INVALID_IDS), as the same list streamed as NDJSON or text is. Only the list's own elements are
 * looked at, none is descended into. A body without an `ids` list, or with more than
 * MAX_INLINE_IDS (the schema's limit, answered as such), is left to the other checks.
 */
export function refuseInvalidInlineIds(body: unknown, where = 'body'): void {
  if (body === null || typeof body !== 'object') return;
  const ids = (body as { ids?: unknown }).ids;
  if (!Array.isArray(ids) || ids.length > MAX_INLINE_IDS) return;
  // The same mistake gets the same code however the list came (NDJSON, text, JSON, the queue).
  if (ids.length === 0) throw emptyIdList(`${where}.ids`);
  const invalid = new InvalidIds();
  for (let i = 0; i < ids.length; i++) invalid.found(ids[i], i);
  invalid.refuse();
}

/**
 * What makes a submitted ID invalid: the ID rule of lib/text.ts (no whitespace, control or
 * invisible formatting characters; they also could not travel in COPY), shown with its code point
 * and an escaped form of the ID so that the hidden character can be seen.
 */
function idProblem(id: unknown): ({ problem: string } & Record<string, unknown>) | undefined {
  if (typeof id === 'object' && id !== null)
    return { problem: `is ${Array.isArray(id) ? 'an array' : 'an object'}, not a string` };
  if (typeof id !== 'string') return { problem: 'is not a string' };
  if (id.length === 0) return { problem: 'is empty' };
  if (longerThan(id, MAX_ID_LENGTH)) return { problem: `is longer than ${MAX_ID_LENGTH} characters` };
  if (isValidText(id, 'id')) return undefined;
  const p = textProblem(id, 'id')!;
  return { problem: p.message, codePoint: p.codePoint, position: p.position, escaped: p.escaped };
}

/**
 * An invalid ID as the error shows it: an over-long one (a line may hold 64 KiB) only by its first
 * MAX_ID_LENGTH characters and its length, so that 100 of them cannot make a 6 MB error.
 */
function shown(id: unknown): { id: unknown; length?: number; truncated?: true } {
  // An array or object is named by its problem, never echoed: it may be large or deeply nested.
  if (typeof id === 'object' && id !== null) return { id: null };
  if (typeof id !== 'string' || !longerThan(id, MAX_ID_LENGTH)) return { id };
  return {
    id: [...id.slice(0, 2 * MAX_ID_LENGTH)].slice(0, MAX_ID_LENGTH).join(''),
    length: [...id].length,
    truncated: true,
  };
}

/** Packed IDs as COPY-text rows numbered from `first`: `ord\tid\n` (no escaping: none has a backslash). */
function copyRows(p: PackedIds, first: number): Buffer {
  const ids = p.bytes;
  const out = Buffer.allocUnsafe(ids.length + p.count * (DIGITS + 2));
  let o = 0;
  let ord = first;
  let lineStart = true;
  for (let i = 0; i < ids.length; i++) {
    if (lineStart) {
      const s = o;
      let v = ord++;
      do {
        out[o++] = 48 + (v % 10);
        v = Math.floor(v / 10);
      } while (v > 0);
      out.subarray(s, o).reverse();
      out[o++] = 0x09;
      lineStart = false;
    }
    const c = ids[i]!;
    out[o++] = c;
    if (c === 0x0a) lineStart = true;
  }
  return out.subarray(0, o);
}
