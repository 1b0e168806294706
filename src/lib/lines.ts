// Streams a request body as batches of lines without holding the body in memory. Used for the
// NDJSON and plain-text uploads (registry imports, 1M-ID operations).
import { StringDecoder } from 'node:string_decoder';
import type { Readable } from 'node:stream';
import { BadRequestError, PayloadTooLargeError } from './errors.ts';

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

/** Yields batches of non-empty lines (CRLF tolerated); `\r` and surrounding blanks trimmed. */
export async function* lineBatches(stream: Readable, limits: LineLimits): AsyncGenerator<Line[]> {
  const decoder = new StringDecoder('utf8');
  let carry = '';
  let bytes = 0;
  let n = 0;
  let batch: Line[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > limits.maxBytes)
      throw new PayloadTooLargeError(`Body is larger than ${limits.maxBytes} bytes`, { maxBytes: limits.maxBytes });
    const text = carry + decoder.write(chunk);
    let start = 0;
    for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', start)) {
      n++;
      const line = text.slice(start, i).trim();
      if (line) batch.push({ n, text: line });
      start = i + 1;
    }
    carry = text.slice(start);
    if (carry.length > limits.maxLineBytes)
      throw new BadRequestError('LINE_TOO_LONG', `Line ${n + 1} is longer than ${limits.maxLineBytes} bytes`, {
        line: n + 1,
      });
    if (batch.length >= limits.batchSize) {
      yield batch;
      batch = [];
    }
  }
  const rest = (carry + decoder.end()).trim();
  if (rest) {
    n++;
    batch.push({ n, text: rest });
  }
  if (batch.length) yield batch;
}

/** Parses one NDJSON line, naming the line on failure. */
export function parseJsonLine(line: Line): unknown {
  try {
    return JSON.parse(line.text);
  } catch {
    throw new BadRequestError('MALFORMED_NDJSON', `Line ${line.n} is not valid JSON`, { line: line.n });
  }
}
