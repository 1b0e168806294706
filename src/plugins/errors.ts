// The one error handler: every error leaves as { code, message, details, requestId }. Client
// mistakes are 4xx with a stable code; 5xx messages are never shown to clients.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, RetryLaterError } from '../lib/errors.ts';
import { isPoolExhausted } from './db.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The `code` of the error this request answered with, for the audit of refused requests. */
    errorCode?: string;
  }
}

const FASTIFY_CODES: Record<string, [number, string]> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'UNSUPPORTED_MEDIA_TYPE'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'MALFORMED_BODY'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'MALFORMED_BODY'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'MALFORMED_BODY'],
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'PAYLOAD_TOO_LARGE'],
  FST_ERR_CTP_INVALID_TYPE: [400, 'MALFORMED_BODY'],
  FST_ERR_VALIDATION: [400, 'VALIDATION_FAILED'],
};
// Seconds a client should wait before retrying a request that found no free database connection:
// long enough for a burst to drain.
const BUSY_RETRY_AFTER_S = 5;

interface ValidationIssue {
  instancePath: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Names each offending field (`body.ids.1`) and leads with an unknown field when there is one. */
export function describeValidation(issues: readonly ValidationIssue[], where: string) {
  const details = issues.map((v) => ({
    field: `${where}${v.instancePath ? v.instancePath.replace(/\//g, '.') : ''}`,
    message: v.message,
    ...(v.params && 'additionalProperty' in v.params ? { unknownField: v.params.additionalProperty } : {}),
  }));
  const unknown = details.find((d) => 'unknownField' in d);
  const message = unknown
    ? `Unknown field "${String(unknown.unknownField)}" in ${unknown.field}`
    : `Invalid ${details[0]?.field ?? where}: ${details[0]?.message ?? 'failed validation'}`;
  return { message, details };
}

export function toClientError(err: FastifyError | AppError | Error): {
  status: number;
  code: string;
  message: string;
  details?: unknown;
  /** Sent as Retry-After: the refusal is temporary. */
  retryAfterSeconds?: number;
} {
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
  const fe = err as FastifyError;
  if (fe.validation)
    return {
      status: 400,
      code: 'VALIDATION_FAILED',
      ...describeValidation(fe.validation, fe.validationContext ?? 'body'),
    };
  const mapped = fe.code ? FASTIFY_CODES[fe.code] : undefined;
  if (mapped) return { status: mapped[0], code: mapped[1], message: fe.message };
  if (err instanceof SyntaxError)
    return { status: 400, code: 'MALFORMED_BODY', message: `Body is not valid JSON: ${err.message}` };
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) {
    return { status: fe.statusCode, code: fe.code?.replace(/^FST_ERR_/, '') ?? 'BAD_REQUEST', message: fe.message };
  }
  return { status: 500, code: 'INTERNAL', message: 'Internal error; see the server log with this requestId' };
}

export function installErrorHandler(app: FastifyInstance) {
  app.setErrorHandler((err: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const e = toClientError(err);
    // A refusal for now (shed, busy, timed out) is the service protecting itself, not a failure.
    if (e.status >= 500 && e.retryAfterSeconds === undefined) request.log.error({ err }, 'request failed');
    else if (e.status >= 500) request.log.warn({ code: e.code, details: e.details }, e.message);
    else request.log.info({ code: e.code, details: e.details }, e.message);
    request.errorCode = e.code;
    if (e.retryAfterSeconds !== undefined) reply.header('retry-after', String(e.retryAfterSeconds));
    return reply
      .status(e.status)
      .send({ code: e.code, message: e.message, details: e.details ?? null, requestId: request.id });
  });
  app.setNotFoundHandler((request, reply) => {
    request.errorCode = 'ROUTE_NOT_FOUND';
    return reply.status(404).send({
      code: 'ROUTE_NOT_FOUND',
      message: `No route ${request.method} ${request.url.split('?')[0]}`,
      details: null,
      requestId: request.id,
    });
  });
}
