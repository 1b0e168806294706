// The JSON body parser: strict UTF-8, bounded nesting, and nothing PostgreSQL cannot store. Every
// JSON body passes here before schema validation, so free-form fields are covered too: an object
// nested 10,000 deep would overflow the stack of JSON.stringify later (a 5xx), and a NUL or a lone
// surrogate would make PostgreSQL refuse (a 5xx) or silently alter the text.
import type { FastifyInstance } from 'fastify';
import { BadRequestError } from '../lib/errors.ts';
import { refuseInvalidInlineIds } from '../modules/operations/intake.ts';
import { fieldSegment as segment } from '../lib/json-keys.ts';
import { refuseDuplicateKeys } from '../lib/lines.ts';
import { isStorable, storageProblem } from '../lib/text.ts';
import { byteLabel, invalidUtf8At, lineAndColumn } from '../lib/utf8.ts';

/** Deepest nesting of objects and arrays a body may have; the deepest schema needs 5. */
export const MAX_JSON_DEPTH = 32;

const JSON_TYPE = 'application/json';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The body may carry an inline `ids` list: its invalid IDs are refused all together first. */
    inlineIds?: boolean;
  }
}

export function installJsonParser(app: FastifyInstance) {
  // Fastify's own parser (prototype-poisoning protection included), fed with strictly decoded text.
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser(JSON_TYPE);
  app.addContentTypeParser(JSON_TYPE, { parseAs: 'buffer' }, (req, body, done) => {
    const buf = body as Buffer;
    // No body at all under a JSON content type (clients that send the header on every request): as
    // if none had been sent. A route that takes none goes on (a DELETE of a token was refused "Body
    // cannot be empty", a trial); one that needs a body says what to send, through its schema.
    if (buf.length === 0) return done(null, undefined);
    const bad = invalidUtf8At(buf);
    if (bad !== -1) {
      const { line, column } = lineAndColumn(buf, bad);
      done(
        new BadRequestError(
          'INVALID_UTF8',
          `The body is not valid UTF-8: byte ${byteLabel(buf, bad)} at offset ${bad} (line ${line}, column ${column}); JSON must be UTF-8 encoded`,
          { byteOffset: bad, line, column, byte: byteLabel(buf, bad) },
        ),
        undefined,
      );
      return;
    }
    const text = buf.toString('utf8');
    void parse(req, text, (err, value) => {
      if (err)
        return done(
          (err as { code?: string }).code === 'FST_ERR_CTP_INVALID_JSON_BODY' ? whyNotParsed(text) : err,
          undefined,
        );
      try {
        refuseDuplicateKeys(text, 'body');
        checkJsonBody(value, req.routeOptions.config.inlineIds === true);
        done(null, value);
      } catch (e) {
        done(e as Error, undefined);
      }
    });
  });
}

/**
 * A parsed body's checks, in order: its depth and storable text (checkJsonValue), then, on a route
 * that takes inline IDs, every invalid ID at once (refuseInvalidInlineIds) — also when one of them
 * is what could not be stored, so that a NUL does not hide the list's other invalid IDs.
 */
export function checkJsonBody(value: unknown, inlineIds: boolean, where = 'body'): void {
  try {
    checkJsonValue(value, where);
  } catch (e) {
    if (inlineIds && (e as BadRequestError).code === 'VALIDATION_FAILED') refuseInvalidInlineIds(value, where);
    throw e;
  }
  if (inlineIds) refuseInvalidInlineIds(value, where);
}

/**
 * Fastify's parser answers every refusal with one error that says neither where nor why. Parsing
 * again (only for a refused body) tells the two apart: JSON that does not parse is named by
 * JSON.parse's own message (what and at which position); JSON that does was refused for a key
 * "__proto__", or "constructor" holding "prototype" — valid JSON, which "not valid JSON" would
 * misdescribe — kept out because merging such an object could alter object prototypes.
 */
function whyNotParsed(text: string): BadRequestError {
  try {
    JSON.parse(text);
  } catch (e) {
    return new BadRequestError('MALFORMED_BODY', `The body is not valid JSON: ${(e as Error).message}`);
  }
  return new BadRequestError(
    'FORBIDDEN_KEY',
    'The body has a key "__proto__", or a key "constructor" holding "prototype": such keys are refused (they could alter object prototypes) and no field of this API has that name',
    { keys: ['__proto__', 'constructor.prototype'] },
  );
}

/**
 * Refuses a parsed JSON value nested deeper than MAX_JSON_DEPTH or holding a string (value or key)
 * that PostgreSQL cannot store. One iterative pass (no recursion, so no depth can overflow it);
 * only when it finds something does a second, depth-bounded pass name the field.
 */
export function checkJsonValue(value: unknown, where: string): void {
  const stack: unknown[] = [value];
  const depths: number[] = [0];
  while (stack.length) {
    const v = stack.pop();
    const depth = depths.pop()!;
    if (typeof v === 'string') {
      if (!isStorable(v)) return locate(value, where);
    } else if (v !== null && typeof v === 'object') {
      if (depth >= MAX_JSON_DEPTH) return locate(value, where);
      if (Array.isArray(v)) {
        for (const x of v) {
          if (x !== null && typeof x === 'object') {
            stack.push(x);
            depths.push(depth + 1);
          } else if (typeof x === 'string' && !isStorable(x)) return locate(value, where);
        }
      } else {
        for (const k in v) {
          if (!isStorable(k)) return locate(value, where);
          stack.push((v as Record<string, unknown>)[k]);
          depths.push(depth + 1);
        }
      }
    }
  }
}

/** Throws the error for the first problem in document order, naming its field. */
function locate(value: unknown, where: string): never {
  const visit = (v: unknown, path: string, depth: number): void => {
    if (typeof v === 'string') {
      const p = storageProblem(v);
      if (p)
        throw new BadRequestError('VALIDATION_FAILED', `Invalid ${path}: ${p.message}; text cannot hold it`, [
          { field: path, message: p.message, codePoint: p.codePoint, position: p.position, escaped: p.escaped },
        ]);
      return;
    }
    if (v === null || typeof v !== 'object') return;
    if (depth >= MAX_JSON_DEPTH)
      throw new BadRequestError(
        'BODY_TOO_DEEP',
        `${path} is nested deeper than ${MAX_JSON_DEPTH} levels of objects and arrays`,
        { field: path, maxDepth: MAX_JSON_DEPTH },
      );
    if (Array.isArray(v)) return v.forEach((x, i) => visit(x, `${path}${segment(i)}`, depth + 1));
    for (const [k, x] of Object.entries(v)) {
      const p = storageProblem(k);
      if (p)
        throw new BadRequestError('VALIDATION_FAILED', `Invalid field name in ${path}: ${p.message}`, [
          { field: path, message: `field name ${p.message}`, codePoint: p.codePoint, escaped: p.escaped },
        ]);
      visit(x, `${path}${segment(k)}`, depth + 1);
    }
  };
  visit(value, where, 0);
  throw new Error('checkJsonValue: a problem was found but not located');
}
