// The JavaScript side of a resource import: request body → batches of shape-checked rows.
// Only shape is checked here (cheaply, per row); values are checked set-based in Postgres.
import { PassThrough, type Readable } from 'node:stream';
import { BadRequestError } from '../../lib/errors.ts';
import { isQuotedNdjson, lineBatches, parseJsonLine, QUOTED_NDJSON } from '../../lib/lines.ts';
import { longerThan, textProblem } from '../../lib/text.ts';
import { MAX_ID_LENGTH } from './schemas.ts';

/** Lines per batch handed from the body reader to COPY: amortises per-batch work, small in memory. */
export const NDJSON_BATCH = 10_000;
/** 1M resources of ~150 bytes each, with headroom for long IDs. */
export const NDJSON_MAX_BYTES = 300 * 1024 * 1024;
/** Six fields of at most 200 characters each, JSON-escaped, fit with room to spare. */
const NDJSON_MAX_LINE = 8 * 1024;

/** One resource row as staged; `pos` is the 1-based NDJSON line or array position. */
export interface StageRow {
  pos: number;
  id: string;
  type: string;
  tenantId: string;
  parentId: string | null;
  /** Whether the row names its parent (null included): an omitted parentId keeps the stored one. */
  parentGiven: boolean;
  state: string | null;
  protected: boolean | null;
}

const FIELDS = new Set(['id', 'type', 'tenantId', 'parentId', 'state', 'protected']);
/** A line of printable ASCII without blanks or escapes can only hold strings that are valid IDs. */
const PLAIN_LINE = /^[\x21-\x5b\x5d-\x7e]*$/;
type Presence = 'required' | 'optional' | 'nullable';

/** Where a row came from, for error messages: an NDJSON line or a JSON array index. */
export type RowAt = { line: number } | { index: number };

function invalid(at: RowAt, field: string, message: string, extra: object = {}): BadRequestError {
  const where = 'line' in at ? `Line ${at.line}` : `resources[${at.index}]`;
  return new BadRequestError('VALIDATION_FAILED', `${where}: ${message}`, [{ ...at, field, message, ...extra }]);
}

function text(o: Record<string, unknown>, field: string, presence: Presence, plain: boolean, at: RowAt): string | null {
  const v = o[field];
  if (v === undefined || (v === null && presence === 'nullable')) {
    if (presence === 'required') throw invalid(at, field, `field "${field}" is required`);
    return null;
  }
  if (typeof v !== 'string' || v.length === 0 || longerThan(v, MAX_ID_LENGTH)) {
    throw invalid(at, field, `field "${field}" must be a string of 1 to ${MAX_ID_LENGTH} characters`);
  }
  const problem = plain ? null : textProblem(v, 'id');
  if (problem)
    throw invalid(at, field, `field "${field}" ${problem.message}`, {
      codePoint: problem.codePoint,
      position: problem.position,
      escaped: problem.escaped,
    });
  return v;
}

/**
 * Checks one row's shape: an object with only known fields, strings of 1–200 characters that are
 * valid IDs (lib/text.ts: no whitespace, control or invisible formatting characters), a boolean
 * `protected`. `plain: true` says the source line was printable ASCII without blanks or
 * backslashes, so every string in it is a valid ID and the per-field scan is skipped.
 */
export function toStageRow(value: unknown, pos: number, at: RowAt, plain = false): StageRow {
  if (isQuotedNdjson(value)) throw invalid(at, '', `the line ${QUOTED_NDJSON}`);
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalid(at, '', 'must be a JSON object');
  const o = value as Record<string, unknown>;
  for (const k in o) {
    if (!FIELDS.has(k)) throw invalid(at, k, `unknown field "${k}"`, { unknownField: k });
  }
  const prot = o.protected;
  if (prot !== undefined && typeof prot !== 'boolean')
    throw invalid(at, 'protected', 'field "protected" must be a boolean');
  return {
    pos,
    id: text(o, 'id', 'required', plain, at)!,
    type: text(o, 'type', 'required', plain, at)!,
    tenantId: text(o, 'tenantId', 'required', plain, at)!,
    parentId: text(o, 'parentId', 'nullable', plain, at),
    parentGiven: o.parentId !== undefined,
    state: text(o, 'state', 'optional', plain, at),
    protected: prot ?? null,
  };
}

/** NDJSON body → batches of checked rows, streamed; the body is never held whole. */
export async function* ndjsonRows(body: Readable): AsyncGenerator<StageRow[]> {
  for await (const lines of lineBatches(body, {
    batchSize: NDJSON_BATCH,
    maxBytes: NDJSON_MAX_BYTES,
    maxLineBytes: NDJSON_MAX_LINE,
  })) {
    yield lines.map((l) => toStageRow(parseJsonLine(l), l.n, { line: l.n }, PLAIN_LINE.test(l.text)));
  }
}

/**
 * JSON body → batches of rows; positions are array indexes + 1. The body schema already checked
 * every string against the ID rule, so the per-field scan is skipped.
 */
export async function* jsonRows(resources: unknown[]): AsyncGenerator<StageRow[]> {
  for (let i = 0; i < resources.length; i += NDJSON_BATCH) {
    yield resources.slice(i, i + NDJSON_BATCH).map((r, j) => toStageRow(r, i + j + 1, { index: i + j }, true));
  }
}

/**
 * Hands the request stream to the line reader through a PassThrough: if the import stops early,
 * the reader destroys only the PassThrough (destroying the request would reset the connection),
 * and `discardRest` can drain the request so that the client receives the 4xx answer.
 */
export function detachable(raw: Readable): PassThrough {
  const pt = new PassThrough({ highWaterMark: 1024 * 1024 });
  // A client that goes away mid-upload ends the import (rolled back) instead of leaving it waiting.
  raw.once('error', (err) => pt.destroy(err));
  raw.once('close', () => {
    if (!raw.readableEnded) pt.destroy(new BadRequestError('UPLOAD_ABORTED', 'The client aborted the upload'));
  });
  raw.pipe(pt);
  return pt;
}

/** Lingering close, as web servers do it: how long we keep reading a refused upload. */
const DISCARD_MAX_MS = 30_000;

/**
 * Reads and drops what is left of a refused request body, so that the client (still sending) gets
 * the answer instead of a reset; after `limit` more bytes or DISCARD_MAX_MS it drops the connection.
 */
export async function discardRest(raw: Readable, limit = NDJSON_MAX_BYTES): Promise<void> {
  if (raw.readableEnded || raw.destroyed) return;
  raw.unpipe();
  let seen = 0;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => giveUp(), DISCARD_MAX_MS);
    const finish = () => {
      clearTimeout(timer);
      raw.off('data', onData);
      raw.off('end', finish);
      raw.off('close', finish);
      raw.off('error', finish);
      resolve();
    };
    const giveUp = () => {
      finish();
      raw.destroy();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > limit) giveUp();
    };
    raw.on('data', onData);
    raw.once('end', finish);
    raw.once('close', finish);
    raw.once('error', finish);
    raw.resume(); // pipe() may have left it paused under backpressure
  });
}
