// Query parameters of list routes: filters that take several values, and keyset paging.
//
// A filter is a list of allowed values, validated like any other field (an unknown value is a 400
// VALIDATION_FAILED naming the parameter and listing what it allows, never an empty page). Several
// values are asked for by repeating the parameter (`state=running&state=paused`, what Swagger UI
// sends) or comma-separated in one (`state=running,paused`); both mean "any of them".
import { Type } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';

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
 * A preValidation hook that splits the comma-separated values of the named query parameters, so
 * that `state=running,paused` validates as `["running", "paused"]` (a single value becomes a list
 * when validated: the query validator coerces scalars to arrays).
 */
export function splitCommaLists(names: readonly string[]) {
  return async (req: FastifyRequest) => {
    const query = req.query as Record<string, unknown> | undefined;
    if (!query) return;
    for (const name of names) {
      const v = query[name];
      if (typeof v === 'string') query[name] = v.split(',');
      else if (Array.isArray(v)) query[name] = v.flatMap((x) => (typeof x === 'string' ? x.split(',') : [x]));
    }
  };
}

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
