// One error model for the whole service: every failure a client can cause is an AppError with a
// stable machine-readable `code`, an HTTP status and optional `details` naming what was wrong.
import { escapedIfNeeded, showText } from './text.ts';

export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export class BadRequestError extends AppError {
  constructor(code: string, message: string, details?: unknown) {
    super(400, code, message, details);
  }
}

export class UnauthorizedError extends AppError {
  /** `code` says why a presented secret does not work (TOKEN_EXPIRED, TOKEN_REVOKED, TOKEN_ROTATED). */
  constructor(message = 'A valid bearer token is required', code = 'UNAUTHORIZED', details?: unknown) {
    super(401, code, message, details);
  }
}

export class ForbiddenError extends AppError {
  constructor(message: string, details?: unknown) {
    super(403, 'FORBIDDEN', message, details);
  }
}

export class NotFoundError extends AppError {
  // An ID with characters outside printable ASCII is shown escaped: a look-alike (a Cyrillic "а")
  // must not read as the ID the client thought it sent.
  constructor(what: string, id: string) {
    super(404, 'NOT_FOUND', `${what} ${showText(id)} does not exist`, {
      [what.toLowerCase()]: id,
      ...escapedIfNeeded(id),
    });
  }
}

export class ConflictError extends AppError {
  constructor(code: string, message: string, details?: unknown) {
    super(409, code, message, details);
  }
}

export class UnprocessableError extends AppError {
  constructor(code: string, message: string, details?: unknown) {
    super(422, code, message, details);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(message: string, details?: unknown) {
    super(413, 'PAYLOAD_TOO_LARGE', message, details);
  }
}

/**
 * More IDs than one operation takes in the format they came in: its own code (a 413 like a body
 * too large, which a client cannot tell apart by status), so a pipeline can split the list.
 */
export class TooManyIdsError extends AppError {
  constructor(maxIds: number, advice: string) {
    super(413, 'TOO_MANY_IDS', `More than ${maxIds.toLocaleString('en')} IDs: ${advice}`, { maxIds });
  }
}

/** The request was not received in time (a client that trickles); nothing was written. */
export class RequestTimeoutError extends AppError {
  constructor(limitMs: number, what = 'The request') {
    super(
      408,
      'REQUEST_TIMEOUT',
      `${what} was not received within ${limitMs} ms (BLASTGATE_REQUEST_TIMEOUT_MS); nothing was created`,
      { limitMs },
    );
  }
}

/**
 * Refused for now, not for good (rate limited, overloaded, no database connection free): answered
 * with a Retry-After header saying when to try again.
 */
export class RetryLaterError extends AppError {
  constructor(
    statusCode: 429 | 503,
    code: string,
    message: string,
    readonly retryAfterSeconds: number,
    details?: unknown,
  ) {
    super(statusCode, code, message, details);
  }
}
