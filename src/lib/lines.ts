// Streams a request body as batches of lines without holding the body in memory. Used for the
// NDJSON and plain-text uploads (registry imports, 1M-ID operations). The body must be valid
// UTF-8: an invalid byte is refused naming its line, never replaced with U+FFFD (two IDs that
// differ only in that byte would otherwise become one).
import type { Readable } from 'node:stream';
import { findDuplicateKey } from './json-keys.ts';
import { BadRequestError, PayloadTooLargeError } from './errors.ts';
import { byteLabel, completePrefix, invalidUtf8At } from './utf8.ts';

export interface LineLimits {
  /** Total body bytes allowed. */
  maxBytes: number;
  /** Longest single line allowed (guards against a body with no newlines). */
  maxLineBytes: number;
  /** Lines handed over per batch. */
  batchSize: number;
}

export interface Line {
  /** 1-based line number in the body, for error messages. */
  n: number;
  text: string;
}

// Only ASCII blanks are trimmed (CRLF line ends, stray spaces): String.prototype.trim would also
// drop a no-break space or a byte order mark, silently turning two different IDs into one.
const ASCII_BLANKS = /^[ \t\r]+|[ \t\r]+$/g;
const trimAscii = (s: string) => (s.length && /^[ \t\r]|[ \t\r]$/.test(s) ? s.replace(ASCII_BLANKS, '') : s);

function countNewlines(buf: Uint8Array, end: number): number {
  let n = 0;
  for (let i = buf.indexOf(0x0a); i !== -1 && i < end; i = buf.indexOf(0x0a, i + 1)) n++;
  return n;
}

function invalidUtf8(line: number, byteOffset: number, byte: string): BadRequestError {
  return new BadRequestError(
    'INVALID_UTF8',
    `The body is not valid UTF-8: byte ${byte} at offset ${byteOffset} (line ${line}); text must be UTF-8 encoded`,
    { line, byteOffset, byte },
  );
}

export const lineTooLong = (line: number, limits: LineLimits) =>
  new BadRequestError('LINE_TOO_LONG', `Line ${line} is longer than ${limits.maxLineBytes} bytes`, {
    line,
    maxLineBytes: limits.maxLineBytes,
  });

function bodyTooLarge(limits: LineLimits) {
  return new PayloadTooLargeError(`Body is larger than the ${limits.maxBytes} bytes this route accepts`, {
    maxBytes: limits.maxBytes,
  });
}

/**
 * The body as chunks that end on a character boundary (a multi-byte character split between
 * chunks waits for the rest), each checked to be UTF-8 and within maxBytes. An invalid byte is
 * refused naming its line: `linesBefore()` lines of the body were read before the chunk.
 */
export async function* utf8Parts(
  stream: Readable,
  limits: LineLimits,
  linesBefore: () => number,
): AsyncGenerator<Buffer> {
  let pending: Buffer = Buffer.alloc(0);
  let bytes = 0;
  let decoded = 0; // bytes before `pending`
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > limits.maxBytes) throw bodyTooLarge(limits);
    const buf = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    const cut = completePrefix(buf);
    const part = buf.subarray(0, cut);
    const bad = invalidUtf8At(part);
    if (bad !== -1)
      throw invalidUtf8(linesBefore() + 1 + countNewlines(part, bad), decoded + bad, byteLabel(part, bad));
    pending = Buffer.from(buf.subarray(cut));
    decoded += cut;
    yield part;
  }
  // Bytes left at the end are a character cut short.
  if (pending.length) throw invalidUtf8(linesBefore() + 1, decoded, byteLabel(pending, 0));
}

/** Yields batches of non-empty lines (CRLF tolerated); blanks and tabs around a line are trimmed. */
export async function* lineBatches(stream: Readable, limits: LineLimits): AsyncGenerator<Line[]> {
  let carry = '';
  let n = 0;
  let batch: Line[] = [];
  for await (const part of utf8Parts(stream, limits, () => n)) {
    const text = carry + part.toString('utf8');
    let start = 0;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', start)) {
      n++;
      const line = trimAscii(text.slice(start, i));
      if (line) batch.push({ n, text: line });
      start = i + 1;
    }
    carry = text.slice(start);
    if (carry.length > limits.maxLineBytes) throw lineTooLong(n + 1, limits);
    if (batch.length >= limits.batchSize) {
      yield batch;
      batch = [];
    }
  }
  const rest = trimAscii(carry);
  if (rest) {
    n++;
    batch.push({ n, text: rest });
  }
  if (batch.length) yield batch;
}

/** Parses one NDJSON line, naming the line on failure. */
export function parseJsonLine(line: Line): unknown {
  let value: unknown;
  try {
    value = JSON.parse(line.text);
  } catch {
    // Editors and shells on Windows save UTF-8 with a byte order mark: say so, it cannot be seen.
    const bom = line.text.charCodeAt(0) === 0xfeff;
    // So is a raw control character (a NUL from a C tool, a tab pasted into an ID): JSON refuses it
    // unescaped, and "not valid JSON" alone sent people looking for a quote.
    // eslint-disable-next-line no-control-regex -- finding control characters is the point
    const ctl = bom ? null : /[\u0000-\u001f]/.exec(line.text);
    const cp = ctl ? `U+${ctl[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}` : '';
    throw new BadRequestError(
      'MALFORMED_NDJSON',
      bom
        ? `Line ${line.n} is not valid JSON: it begins with a byte order mark (U+FEFF); save the file as UTF-8 without one`
        : ctl
          ? `Line ${line.n} is not valid JSON: it contains the control character ${cp}${cp === 'U+0000' ? ' (NUL)' : ''} at column ${ctl.index + 1}, which JSON allows only escaped and no ID may contain`
          : `Line ${line.n} is not valid JSON`,
      {
        line: line.n,
        ...(bom ? { byteOrderMark: true } : {}),
        ...(ctl ? { codePoint: cp, column: ctl.index + 1 } : {}),
      },
    );
  }
  refuseDuplicateKeys(line.text, `line ${line.n}`, line.n);
  return value;
}

/** Throws DUPLICATE_KEY when an object of `text` repeats a key (lib/json-keys.ts); `line` for an NDJSON line. */
export function refuseDuplicateKeys(text: string, where: string, line?: number): void {
  const dup = findDuplicateKey(text, where);
  if (!dup) return;
  // On a line, where in it (`rollout`) rather than the path again (`line 1.rollout`).
  const inside = dup.field.slice(where.length).replace(/^\./, '');
  const at = line === undefined ? dup.field : `Line ${line}`;
  throw new BadRequestError(
    'DUPLICATE_KEY',
    `${at} gives the key ${JSON.stringify(dup.key)} more than once${line !== undefined && inside ? ` (in ${inside})` : ''}; which one was meant cannot be told, so nothing was read`,
    { field: dup.field, key: dup.key, ...(line === undefined ? {} : { line }) },
  );
}

/**
 * A first line that is one JSON string holding several lines: the whole NDJSON body was sent
 * JSON-quoted, as Swagger UI's "Try it out" sends an NDJSON example (its media type says json). It
 * was refused as "must be a JSON object", which sent people looking at the lines (a trial).
 */
export const QUOTED_NDJSON =
  'is one JSON string holding several lines: the NDJSON body was sent JSON-quoted, as Swagger UI sends an NDJSON example. ' +
  "Send the lines themselves (curl --data-binary @lines.ndjson -H 'content-type: application/x-ndjson'), or the application/json body in Swagger UI";

export const isQuotedNdjson = (value: unknown) => typeof value === 'string' && value.includes('\n');
