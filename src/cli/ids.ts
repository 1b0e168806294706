// Reads an ID list (a file or stdin) and turns it into the body of an NDJSON submission as it goes:
// line 1 the spec, then one ID per line. Nothing is held but the current chunk, so 1,000,000 IDs
// cost what one chunk does. Lines are bytes until they must be text: an invalid UTF-8 byte stops
// the upload naming its line (decoding it as U+FFFD would turn two different IDs into one), and
// only ASCII blanks are trimmed, as the server does (a no-break space is part of an ID).
import { accessSync, constants, createReadStream, statSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { findDuplicateKey } from '../lib/json-keys.ts';
import { CliError, EXIT, usageError } from './exit-codes.ts';

export type IdFormat = 'auto' | 'text' | 'ndjson';

/** Bytes per chunk handed to the HTTP body: big enough to be cheap, small enough not to matter. */
const CHUNK_BYTES = 64 * 1024;
/**
 * The longest line the server reads (STREAM_LIMITS.maxLineBytes; test/cli/ids.test.ts
 * keeps them equal). Refused here as soon as a line passes it: a list without newlines (a binary
 * file, one huge line) was otherwise gathered whole in memory before the server refused it (a 50 MB
 * line took the CLI to 400 MB).
 */
export const MAX_LINE_BYTES = 64 * 1024;
const NEWLINE = 0x0a;
const QUOTE = 0x22;
const BRACE = 0x7b;

const isBlank = (b: number) => b === 0x20 || b === 0x09 || b === 0x0d;

export function openIds(file: string | undefined, stdin: Readable = process.stdin): Readable {
  if (!file || file === '-') {
    if ((stdin as { isTTY?: boolean }).isTTY)
      throw usageError('no IDs: give --ids-file <file> or pipe the IDs to stdin (one per line, or NDJSON)');
    return stdin;
  }
  // A missing or unreadable file is a usage error before anything is sent.
  try {
    accessSync(file, constants.R_OK);
  } catch (err) {
    throw usageError(`cannot read the ID list ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  // A directory passes the access check; read, it failed mid-request as a connection error.
  if (statSync(file).isDirectory()) throw usageError(`cannot read the ID list ${file}: it is a directory`);
  return createReadStream(file);
}

export interface IdStats {
  lines: number;
  ids: number;
  /** Where blank lines were, so that an ID the server names by index can be named by its line. */
  blanks?: ListLines;
}

/**
 * The list's line of each ID: its index + 1 plus the blank lines before it. Only blank lines are
 * kept, a run of them as one entry, so a 1,000,000-ID list without them costs nothing.
 */
export class ListLines {
  /** ID index before which a run of blank lines came (ascending)… */
  private at: number[] = [];
  /** …and how many blank lines came before that ID in all. */
  private upTo: number[] = [];

  blank(idsSoFar: number) {
    const last = this.at.length - 1;
    if (last >= 0 && this.at[last] === idsSoFar) this.upTo[last]!++;
    else {
      this.at.push(idsSoFar);
      this.upTo.push((last >= 0 ? this.upTo[last]! : 0) + 1);
    }
  }

  lineOf(index: number): number {
    let lo = 0;
    let hi = this.at.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.at[mid]! <= index) lo = mid + 1;
      else hi = mid;
    }
    return index + 1 + (lo ? this.upTo[lo - 1]! : 0);
  }
}

/**
 * The NDJSON body: `head` (the spec) on line 1, then each input line as a JSON string ID
 * (`"app_1"`), or as it is when it already is NDJSON (`"app_1"` or `{"id":"app_1"}`).
 */
export async function* ndjsonBody(
  input: AsyncIterable<Buffer | string>,
  head: object | null,
  format: IdFormat,
  stats: IdStats = { lines: 0, ids: 0 },
): AsyncGenerator<Uint8Array> {
  // ignoreBOM: a U+FEFF at the start of a line is part of it (the server refuses it in an ID);
  // decoding each line with the default would drop it from every line without a word.
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  // Built as text and encoded once per chunk: one allocation per 64 KiB, not one per ID.
  let out = head ? JSON.stringify(head) + '\n' : '';
  let outLength = out.length;
  let rest: Buffer = Buffer.alloc(0);

  const emitLine = (line: Buffer) => {
    stats.lines++;
    let start = 0;
    let end = line.length;
    while (start < end && isBlank(line[start]!)) start++;
    while (end > start && isBlank(line[end - 1]!)) end--;
    // Passed on as an empty line (the server skips it too), so that the server's line numbers are
    // the list's own plus the spec line (inListLines).
    if (start === end) {
      stats.blanks?.blank(stats.ids);
      out += '\n';
      outLength++;
      return;
    }
    const bytes = line.subarray(start, end);
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch {
      throw new CliError(EXIT.usage, 'INVALID_UTF8', `line ${stats.lines} of the ID list is not valid UTF-8`, {
        line: stats.lines,
      });
    }
    const json = bytes[0] === QUOTE || bytes[0] === BRACE;
    if (format === 'ndjson' && !json)
      throw new CliError(EXIT.usage, 'INVALID_ID_LINE', `line ${stats.lines} is not NDJSON ("id" or {"id": ...})`, {
        line: stats.lines,
      });
    const line_ = (json && format !== 'text' ? text : JSON.stringify(text)) + '\n';
    stats.ids++;
    out += line_;
    outLength += line_.length;
  };

  const tooLong = (length: number) => {
    if (length <= MAX_LINE_BYTES) return;
    const line = stats.lines + 1;
    throw new CliError(
      EXIT.usage,
      'LINE_TOO_LONG',
      `line ${line} of the ID list is longer than ${MAX_LINE_BYTES} bytes (is it a list of IDs, one per line?)`,
      { line, maxLineBytes: MAX_LINE_BYTES },
    );
  };
  for await (const chunk of input) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    let from = 0;
    for (let nl = buf.indexOf(NEWLINE); nl !== -1; nl = buf.indexOf(NEWLINE, from)) {
      const piece = buf.subarray(from, nl);
      tooLong(rest.length + piece.length);
      emitLine(rest.length ? Buffer.concat([rest, piece]) : piece);
      rest = Buffer.alloc(0);
      from = nl + 1;
    }
    if (from < buf.length) {
      tooLong(rest.length + buf.length - from);
      rest = Buffer.concat([rest, buf.subarray(from)]);
    }
    if (outLength >= CHUNK_BYTES) {
      yield Buffer.from(out);
      out = '';
      outLength = 0;
    }
  }
  if (rest.length) emitLine(rest);
  if (outLength) yield Buffer.from(out);
}

/** An ID list without an ID: every command refuses it the same way, before anything is sent. */
export const emptyIdList = () => usageError('the ID list is empty');

/**
 * The NDJSON body, read up to the list's first ID (or its end) before the request is made: an empty
 * list was sent and refused by the server (exit 1) over REST, but is a usage error (exit 2) through
 * the queue, which reads the whole list first. Holds only what comes before the first ID.
 */
export async function withIds(body: AsyncGenerator<Uint8Array>, stats: IdStats): Promise<AsyncGenerator<Uint8Array>> {
  const before: Uint8Array[] = [];
  while (stats.ids === 0) {
    const next = await body.next();
    if (next.done) throw emptyIdList();
    before.push(next.value);
  }
  return (async function* () {
    yield* before;
    yield* body;
  })();
}

/**
 * Every ID of a (small) list, for routes that take IDs inline (restores, purges, the queue), read
 * by the server's NDJSON rules: a line is "id" or {"id": "..."} (one key, given once); a line that
 * is not is refused naming the list's own line (blank lines count: ndjsonBody passes them on).
 */
export async function collectIds(
  input: AsyncIterable<Buffer | string>,
  max: number,
  /** Where the blank lines were, so that an ID the server names by index is also named by line. */
  blanks?: ListLines,
): Promise<string[]> {
  const ids: string[] = [];
  let n = 0;
  let carry = '';
  for await (const chunk of ndjsonBody(input, null, 'auto')) {
    const lines = (carry + Buffer.from(chunk).toString('utf8')).split('\n');
    carry = lines.pop()!;
    for (const line of lines) {
      n++;
      if (!line) {
        blanks?.blank(ids.length);
        continue;
      }
      ids.push(lineId(line, n));
      if (ids.length > max) throw usageError(`this command takes at most ${max} IDs inline`);
    }
  }
  return ids;
}

function lineId(line: string, n: number): string {
  const bad = (why: string) => usageError(`line ${n} of the ID list ${why}`, { line: n });
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw bad('is not valid JSON');
  }
  if (typeof v === 'string') return v;
  const dup = findDuplicateKey(line, 'line');
  if (dup) throw bad(`gives the key ${JSON.stringify(dup.key)} more than once`);
  if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 1) {
    const id = (v as { id?: unknown }).id;
    if (typeof id === 'string') return id;
  }
  throw bad('must be "id" or {"id": "..."}');
}

/**
 * A server error about a line of the body (`details.line`) counts the spec line this CLI put in
 * front of the list: said again with the list's own line number, as the user's file has it. One
 * that names IDs by index (INVALID_IDS entries, a rejection's offenders) also gets each one's
 * line in the list (`where`, from the blank lines ndjsonBody saw).
 */
export function inListLines(err: unknown, where?: ListLines): unknown {
  // Only the server's answers (with an HTTP status): the CLI's own errors count the list's lines.
  if (!(err instanceof CliError) || err.status === undefined) return err;
  const d = err.details as Record<string, unknown> | undefined;
  if (!d) return err;
  if (typeof d.line === 'number' && d.line >= 2) {
    const line = d.line - 1;
    // Every mention of the body's line (the message's, a field path's `line 5.id`) becomes the list's.
    const own = (text: string) => text.replace(new RegExp(`\\b([Ll])ine ${d.line}\\b`, 'g'), `$1ine ${line}`);
    const message = own(err.message).replace(/^Line \d+/, (m) => `${m} of the ID list`);
    const field = typeof d.field === 'string' ? { field: own(d.field) } : {};
    return new CliError(err.exitCode, err.code, message, { ...d, line, ...field }, err.status);
  }
  return where ? idsByLine(err, where) : err;
}

/**
 * A refusal that names IDs by index (INVALID_IDS entries, a rejection's offenders), from the API or
 * from the intake queue's job: each one also by its line in the list (`where`, the blank lines seen).
 */
export function idsByLine(err: unknown, where: ListLines): unknown {
  if (!(err instanceof CliError)) return err;
  const d = err.details as Record<string, unknown> | undefined;
  if (!d) return err;
  const lined = (list: unknown) =>
    Array.isArray(list)
      ? list.map((o: { index?: unknown }) =>
          typeof o?.index === 'number' ? { index: o.index, line: where.lineOf(o.index), ...o } : o,
        )
      : list;
  if (err.code === 'INVALID_IDS' && Array.isArray(d.invalid)) {
    const first = (d.invalid[0] as { index?: unknown } | undefined)?.index;
    const message =
      typeof first === 'number'
        ? err.message.replace(`at index ${first}`, `at index ${first} (line ${where.lineOf(first)} of the ID list)`)
        : err.message;
    return new CliError(err.exitCode, err.code, message, { ...d, invalid: lined(d.invalid) }, err.status);
  }
  if (d.offenders && typeof d.offenders === 'object') {
    const offenders = Object.fromEntries(Object.entries(d.offenders).map(([cls, list]) => [cls, lined(list)]));
    return new CliError(err.exitCode, err.code, err.message, { ...d, offenders }, err.status);
  }
  return err;
}
