// Schemas shared by every module.
import { Type, type Static, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TStringOptions } from 'typebox';
import { DEFAULT_ERROR_EXAMPLES, type ErrorExample } from './error-examples.ts';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
  RouteOptions,
} from 'fastify';

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export const ErrorResponse = Type.Object(
  {
    code: Type.String({ description: 'Stable machine-readable error code', example: 'PLAN_REJECTED' }),
    message: Type.String({ description: 'What went wrong, for humans' }),
    details: Type.Any({ description: 'Which IDs or fields were wrong, when known' }),
    requestId: Type.String({ description: 'Correlates with the server log' }),
  },
  {
    $id: 'ErrorResponse',
    description: 'Every error response has this shape',
    example: {
      code: 'VALIDATION_FAILED',
      message: 'Unknown field "foo" in body',
      details: [{ field: 'body', message: 'must NOT have additional properties', unknownField: 'foo' }],
      requestId: 'req-1',
    },
  },
);

/**
 * One error response: the shared shape with an example of this status (its default from
 * lib/error-examples.ts, or the route's own), shown by Swagger UI for that status.
 */
export const errorResponse = (status: number, example?: ErrorExample, description?: string) =>
  // allOf, not a bare $ref: the OpenAPI conversion drops every keyword next to a $ref.
  Type.Unsafe<Static<typeof ErrorResponse>>({
    allOf: [Type.Ref('ErrorResponse')],
    description: description ?? ERROR_DESCRIPTIONS[status] ?? 'Error',
    examples: [{ details: null, ...(example ?? DEFAULT_ERROR_EXAMPLES[status]), requestId: 'req-1' }],
  });

/** Standard error responses to list on a route, besides its own. */
export const errorResponses = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, errorResponse(s)]));

type StringOptions = TStringOptions;

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'Malformed request or failed validation',
  401: 'Missing, unknown or revoked bearer token',
  403: "The token's role may not do this",
  404: 'Not found',
  409: 'Conflicts with the current state',
  413: 'Body larger than allowed',
  415: 'Content type not accepted here',
  422: 'Understood but refused (see code and details)',
  408: 'The request was not received in time (BLASTGATE_REQUEST_TIMEOUT_MS); nothing was created',
  429: 'Rate limit reached for this token (see Retry-After)',
  503: 'Overloaded, no database connection free, PostgreSQL or Redis unreachable, or not answered in time (see Retry-After)',
};

// Strings that are stored or shown say which characters they take, by format (lib/text.ts; the
// validator registers the formats, the OpenAPI document shows them):
// - `id`: no whitespace, control or invisible formatting characters (bidi, zero-width, BOM);
// - `text`: one line, no control or invisible formatting characters;
// - `multiline-text`: like text, but tab and line breaks are allowed.

/** Longest ID accepted anywhere (registry IDs, tenant IDs, operation IDs). */
export const MAX_ID_LENGTH = 200;

export const IdString = (opts: StringOptions = {}) =>
  Type.String({ format: 'id', minLength: 1, maxLength: MAX_ID_LENGTH, ...opts });
export const Text = (opts: StringOptions = {}) => Type.String({ format: 'text', ...opts });
export const MultilineText = (opts: StringOptions = {}) => Type.String({ format: 'multiline-text', ...opts });

/** Path parameters named `id`: every ID the registry accepts (and operation IDs). */
export const IdParams = (description: string, example: string) =>
  Type.Object({ id: IdString({ description, example }) });

/** Integer query parameters land in int4 columns: bounded, so a huge value is a 400, not a 5xx. */
export const MAX_INT4 = 2_147_483_647;

/** `links` of a page of any list: the next page with the same filters (lib/list-query.ts nextLink). */
export const PageLinks = Type.Object({
  next: Type.Union([Type.String({ description: 'The next page with the same filters' }), Type.Null()]),
});

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH']);

/** A route whose method carries a body (for documentErrorResponses). */
export const takesBody = (route: { method: string | string[] }) =>
  (Array.isArray(route.method) ? route.method : [route.method]).some((m) => BODY_METHODS.has(m));

/**
 * Documents refusals that apply across routes (timeouts, rate limits, load shedding) on every /v1
 * route `when` selects, as the plugin that causes them is registered; a route's own entry wins.
 */
export function documentErrorResponses(
  app: FastifyInstance,
  statuses: number[],
  when: (route: RouteOptions) => boolean = () => true,
) {
  app.addHook('onRoute', (route) => {
    if (!route.url.startsWith('/v1') || !when(route)) return;
    route.schema = {
      ...route.schema,
      response: { ...errorResponses(...statuses), ...(route.schema?.response as object | undefined) },
    };
  });
}
