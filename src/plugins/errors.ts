// The one error handler: every error leaves as { code, message, details, requestId }. Client
// mistakes are 4xx with a stable code and say what is allowed; 5xx messages are never shown to
// clients. Also the answers Fastify and Node would otherwise give in their own shapes (or without
// a body): a path segment over the router's limit or with broken percent-encoding
// (frameworkErrors), an Expect header other than 100-continue and an HTTP/1.1 request without a
// Host header (installProtocolAnswers). What Node answers before any request exists (slow or
// oversized headers) is answered in the same shape by plugins/timeouts.ts.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import FindMyWay, { type HTTPMethod } from 'find-my-way';
import { AppError, BadRequestError, RetryLaterError } from '../lib/errors.ts';
import { isReadRequest } from '../lib/route-kinds.ts';
import { DEPENDENCY_NAMES, dependencyOf } from '../lib/outage-log.ts';
import { isPoolExhausted, isUnreachable } from './db.ts';
import { acceptedTypes, unsupportedMediaType } from './uploads.ts';
import { describeValidation } from './validation-messages.ts';

/**
 * Headers a request may give once: Node would keep the first of the first two and drop the others,
 * and join two Idempotency-Keys with ", " (refused then as a key "must match pattern": a trial).
 */
const SINGLE_HEADERS = ['authorization', 'content-type', 'idempotency-key'] as const;

export { describeValidation } from './validation-messages.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The `code` of the error this request answered with, for the audit of refused requests. */
    errorCode?: string;
  }
}

/**
 * Longest path parameter the router takes, in UTF-16 code units after percent-decoding. Registry
 * IDs are up to 200 characters, which is up to 400 code units beyond the BMP; longer segments are
 * refused like a schema's maxLength, in the project's shape.
 */
export const MAX_PARAM_LENGTH = 1000;
/** What every ID path parameter's schema allows (the registry's MAX_ID_LENGTH). */
const PARAM_SCHEMA_MAX = 200;

const FASTIFY_CODES: Record<string, [number, string]> = {
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'MALFORMED_BODY'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'MALFORMED_BODY'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'MALFORMED_BODY'],
  FST_ERR_CTP_INVALID_TYPE: [400, 'MALFORMED_BODY'],
  FST_ERR_VALIDATION: [400, 'VALIDATION_FAILED'],
};
// Seconds a client should wait before retrying a request that found no free database connection:
// long enough for a burst to drain.
const BUSY_RETRY_AFTER_S = 5;

interface ClientError {
  status: number;
  code: string;
  message: string;
  details?: unknown;
  /** Sent as Retry-After: the refusal is temporary. */
  retryAfterSeconds?: number;
}

/**
 * What a 503 for an unreachable dependency adds: a write cut off may or may not have taken effect,
 * so it is read before it is sent again. A read has nothing to check (a trial found the command's
 * advice on GETs and registry imports).
 */
function cutOffAdvice(request?: FastifyRequest): string {
  if (request && isReadRequest(request)) return '';
  if (request && !request.url.startsWith('/v1/operations'))
    return ' A write cut off this way may have taken effect or not: read what it was to change before sending it again';
  return ' A command cut off this way may have taken effect or not: read the operation before sending it again';
}

export function toClientError(err: FastifyError | AppError | Error, request?: FastifyRequest): ClientError {
  if (err instanceof AppError)
    return {
      status: err.statusCode,
      code: err.code,
      message: err.message,
      details: err.details,
      ...(err instanceof RetryLaterError ? { retryAfterSeconds: err.retryAfterSeconds } : {}),
    };
  if (isPoolExhausted(err))
    return {
      status: 503,
      code: 'DATABASE_BUSY',
      message: 'No database connection became free in time; retry later (resubmit with the same Idempotency-Key)',
      retryAfterSeconds: BUSY_RETRY_AFTER_S,
    };
  if (isUnreachable(err)) {
    const dependency = dependencyOf(err);
    return {
      status: 503,
      code: 'DEPENDENCY_UNAVAILABLE',
      message: `${dependency ? `${DEPENDENCY_NAMES[dependency]} could not be reached` : 'PostgreSQL or Redis could not be reached (GET /readyz names which)'}; retry later.${cutOffAdvice(request)}`,
      ...(dependency ? { details: { dependency } } : {}),
      retryAfterSeconds: BUSY_RETRY_AFTER_S,
    };
  }
  const fe = err as FastifyError;
  if (fe.validation)
    return {
      status: 400,
      code: 'VALIDATION_FAILED',
      ...describeValidation(fe.validation, fe.validationContext ?? 'body'),
    };
  if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
    const maxBytes = request?.routeOptions.bodyLimit;
    return {
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
      message: maxBytes
        ? `Body is larger than the ${maxBytes} bytes this route accepts`
        : 'Body is larger than this route accepts',
      details: { maxBytes: maxBytes ?? null },
    };
  }
  if (fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    const e = unsupportedMediaType(request?.mediaType, request ? acceptedTypes(request) : [], request);
    return { status: 415, code: e.code, message: e.message, details: e.details };
  }
  if (fe.code === 'FST_STATIC_FORBIDDEN_PATH')
    return {
      status: 404,
      code: 'ROUTE_NOT_FOUND',
      message: 'No such documentation file: its path holds a NUL byte or a dot segment (. or ..)',
    };
  const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return { status: mapped[0], code: mapped[1], message: fe.message };
  if (err instanceof SyntaxError)
    return { status: 400, code: 'MALFORMED_BODY', message: `Body is not valid JSON: ${err.message}` };
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
    // A plugin's own code without its FST_ prefix (the project's codes never carry one).
    return { status: fe.statusCode, code: fe.code?.replace(/^FST_(ERR_)?/, '') ?? 'BAD_REQUEST', message: fe.message };
  }
  return { status: 500, code: 'INTERNAL', message: 'Internal error; see the server log with this requestId' };
}

function send(request: FastifyRequest, reply: FastifyReply, e: ClientError) {
  request.errorCode = e.code;
  if (e.retryAfterSeconds !== undefined) reply.header('retry-after', String(e.retryAfterSeconds));
  return reply
    .status(e.status)
    .send({ code: e.code, message: e.message, details: e.details ?? null, requestId: request.id });
}

export function installErrorHandler(app: FastifyInstance) {
  // A path that exists under other methods is a 405 naming them (`Allow`), not "no such route": a
  // DELETE /v1/operations/{id} read as a mistyped URL (a trial). Fastify's own router is not
  // public, so every route is also kept in one of find-my-way's own, used only to ask this.
  const routes = FindMyWay({ maxParamLength: MAX_PARAM_LENGTH });
  app.addHook('onRoute', (route) => {
    for (const m of [route.method].flat()) {
      const method = m.toUpperCase() as HTTPMethod;
      if (!routes.hasRoute(method, route.url)) routes.on(method, route.url, () => undefined);
    }
  });
  const noRoute = (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0]!;
    const allow = ROUTER_METHODS.filter((m) => m !== request.method && routes.find(m, path) !== null);
    if (allow.length) {
      reply.header('allow', allow.join(', '));
      return send(request, reply, {
        status: 405,
        code: 'METHOD_NOT_ALLOWED',
        message: `${request.method} is not served on ${path}; it takes ${allow.join(', ')}`,
        details: { method: request.method, allow },
      });
    }
    return send(request, reply, {
      status: 404,
      code: 'ROUTE_NOT_FOUND',
      message: `No route ${request.method} ${path}`,
    });
  };
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    // No route takes it: its body (read on the way, a malformed one refused) is beside the point,
    // and a user who fixed the body learnt only then that the method was wrong (a trial).
    if (request.is404) return noRoute(request, reply);
    const e = toClientError(err, request);
    // A refusal for now (shed, busy, timed out) is the service protecting itself, not a failure.
    if (e.status >= 500 && e.retryAfterSeconds === undefined) request.log.error({ err }, 'request failed');
    else if (e.status >= 500) request.log.warn({ code: e.code, details: e.details }, e.message);
    else request.log.info({ code: e.code, details: e.details }, e.message);
    return send(request, reply, e);
  });
  app.setNotFoundHandler(noRoute);
}

const ROUTER_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;

/** Fastify's `frameworkErrors`: errors of the router, before a route is chosen. */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    const message = `must NOT have more than ${PARAM_SCHEMA_MAX} characters`;
    void send(request, reply, {
      status: 400,
      code: 'VALIDATION_FAILED',
      message: `Invalid params: a path segment is longer than any ID (${PARAM_SCHEMA_MAX} characters at most)`,
      details: [{ field: 'params', message, limit: PARAM_SCHEMA_MAX }],
    });
    return;
  }
  if (err.code === 'FST_ERR_BAD_URL') {
    void send(request, reply, {
      status: 400,
      code: 'BAD_URL',
      message: 'The path is not valid: a percent-encoded segment does not decode to UTF-8 text',
    });
    return;
  }
  request.log.error({ err }, 'router error');
  void send(request, reply, {
    status: 500,
    code: 'INTERNAL',
    message: 'Internal error; see the server log with this requestId',
  });
}

/**
 * Node's own refusals, which it would send with an empty body, in the project's shape instead:
 * - an `Expect` other than 100-continue (417; Node answers before any route runs);
 * - an HTTP/1.1 request without a Host header (400, as RFC 9112 requires). Node's own check is
 *   turned off where the server is built (`requireHostHeader: false`) so that this one answers.
 */
export function installProtocolAnswers(app: FastifyInstance) {
  app.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = JSON.stringify({
      code: 'EXPECTATION_FAILED',
      message: 'The Expect header is not supported here; the only expectation this server meets is 100-continue',
      details: { header: 'expect', allowed: ['100-continue'] },
      requestId: randomUUID(),
    });
    res
      .writeHead(417, {
        'content-type': 'application/json; charset=utf-8',
        'content-length': Buffer.byteLength(body),
        connection: 'close',
      })
      .end(body);
    req.resume();
  });
  app.addHook('onRequest', async (request) => {
    // Node keeps the first of these and drops any other in silence: with two credentials, which
    // token acted depended on the header order; with two content types, how the body was read.
    const raw = request.raw.rawHeaders;
    for (const header of SINGLE_HEADERS) {
      let count = 0;
      for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === header) count++;
      if (count > 1)
        throw new BadRequestError('DUPLICATE_HEADER', `The ${header} header is given ${count} times; send it once`, {
          header,
          count,
        });
    }
    if (request.raw.httpVersion === '1.1' && request.headers.host === undefined)
      throw new BadRequestError(
        'MISSING_HOST',
        'An HTTP/1.1 request must carry a Host header (RFC 9112, section 3.2)',
        {
          header: 'host',
        },
      );
  });
}
