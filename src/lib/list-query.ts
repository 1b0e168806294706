// Query parameters of list routes: filters that take several values, and keyset paging.
//
// A page's cursor is the key of its last row (an ID, a ledger position). Read as a bare position,
// anything sorts somewhere: `cursor=zzzz` after every operation ID (the first page again), base64
// before them all (an empty page, which a client takes for "that was everything"). So a cursor is
// refused (INVALID_CURSOR) unless it is a key the list could have given as nextCursor.
//
// A filter is a list of allowed values, validated like any other field (an unknown value is a 400
// VALIDATION_FAILED naming the parameter and listing what it allows, never an empty page). Several
// values are asked for by repeating the parameter (`state=running&state=paused`, what Swagger UI
// sends) or comma-separated in one (`state=running,paused`); both mean "any of them".
import { Type } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { closest } from './closest.ts';
import { BadRequestError } from './errors.ts';
import { escapedIfNeeded, showText } from './text.ts';

/** Most values one filter takes (each value once is already every one of them). */
const MAX_FILTER_VALUES = 50;

/** A filter parameter: any of `values`, repeated or comma-separated. */
export const ListFilter = <T extends string>(values: readonly T[], description: string) =>
  Type.Optional(
    Type.Array(Type.Unsafe<T>({ type: 'string', enum: [...values] }), {
      minItems: 1,
      maxItems: MAX_FILTER_VALUES,
      description: `${description}. Any of: ${values.join(', ')}. Several: repeat the parameter or separate with commas`,
    }),
  );

/**
 * A preValidation hook for filter parameters: splits comma-separated values, so that
 * `state=running,paused` validates as `["running", "paused"]` (a single value becomes a list when
 * validated: the query validator coerces scalars to arrays), and refuses a value that is not one
 * of the parameter's `allowed` ones (null: no fixed list) with a 400 naming the parameter itself
 * (`querystring.state`, not the position in the list) and every value it takes.
 */
export function listFilters(filters: Record<string, readonly string[] | null>) {
  return async (req: FastifyRequest) => {
    const query = req.query as Record<string, unknown> | undefined;
    if (!query) return;
    for (const [name, allowed] of Object.entries(filters)) {
      const v = query[name];
      if (typeof v === 'string') query[name] = split(v);
      else if (Array.isArray(v)) query[name] = v.flatMap((x) => (typeof x === 'string' ? split(x) : [x]));
      const values = (query[name] as unknown[] | undefined) ?? [];
      const i = allowed ? values.findIndex((x) => typeof x !== 'string' || !allowed.includes(x)) : -1;
      if (i >= 0) {
        const field = `querystring.${name}`;
        const message = `must be one of ${allowed!.map((a) => JSON.stringify(a)).join(', ')}`;
        const shown = showText(String(values[i]));
        // `state=runing` (a trial's typo) names what it was surely meant to be.
        const guess = typeof values[i] === 'string' ? closest(values[i], [...allowed!]) : undefined;
        throw new BadRequestError(
          'VALIDATION_FAILED',
          `Invalid ${field}: ${shown.startsWith('"') ? shown : JSON.stringify(shown)} is not allowed` +
            `${guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ''}; ${message}`,
          [{ field, message, allowed, ...(guess ? { didYouMean: guess } : {}) }],
        );
      }
    }
  };
}

/**
 * A parameter's comma-separated values. Empty pieces around a comma are dropped (`running,`, a
 * trial's `--state running,` was refused as `"" is not allowed`); an empty parameter stays one
 * empty value, which is refused.
 */
const split = (v: string) => (v.includes(',') ? v.split(',').filter((x) => x !== '') : [v]);

/**
 * A page of `rows` read with one row more than `limit` (`readLimit`): the extra row only says that
 * a next page exists, so a page that is exactly the last one offers none (a trial's `--limit 1`
 * over one operation printed a "More:" command that listed nothing). `last` is the row the next
 * page's cursor is taken from, null when nothing follows.
 */
export function splitPage<T>(rows: T[], limit: number): { items: T[]; last: T | null } {
  const items = rows.slice(0, limit);
  return { items, last: rows.length > limit ? items[items.length - 1]! : null };
}
export const readLimit = (limit: number) => limit + 1;

/** The URL of the next page: this request's query with the cursor parameter moved on. */
export function nextLink(path: string, query: Record<string, unknown>, cursorParam: string, cursor: string | null) {
  if (cursor === null) return null;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (k === cursorParam || v === undefined) continue;
    for (const x of Array.isArray(v) ? v : [v]) params.append(k, String(x));
  }
  params.set(cursorParam, cursor);
  return `${path}?${params.toString()}`;
}

/**
 * The refusal of a `cursor` the list did not give. `gives` says what its cursors are ("an
 * operation ID"); the answer names the parameter and never runs the list.
 */
export function invalidCursor(cursor: string | number, gives: string) {
  const text = String(cursor);
  const shown = showText(text);
  const message = `must be the nextCursor of a page of this list (${gives})`;
  return new BadRequestError(
    'INVALID_CURSOR',
    `Invalid querystring.cursor: ${shown.startsWith('"') ? shown : JSON.stringify(shown)} is not a cursor this list gave; ${message}. Leave it out for the first page`,
    [{ field: 'querystring.cursor', message, value: cursor, ...escapedIfNeeded(text) }],
  );
}
