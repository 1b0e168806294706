// What each error status looks like in the OpenAPI document. Swagger UI shows the example of a
// response's media type; with one example on the shared ErrorResponse schema every status showed
// the same 400 ("Unknown field foo"), so a reader could not tell a 401 from a 409. Each status
// gets an example with a code the server really answers it with (lib/errors.ts, plugins/errors.ts,
// the lifecycle's refusals); routes whose 409 or 422 means something else pass their own.
// test/http/openapi.test.ts checks every documented 4xx/5xx example against its status.
import { invalidCursor } from './list-query.ts';

export interface ErrorExample {
  code: string;
  message: string;
  details?: unknown;
}

/** INVALID_CURSOR exactly as the server words it (lib/list-query.ts invalidCursor). */
function cursorRefusal(value: string | number, gives: string): ErrorExample {
  const { code, message, details } = invalidCursor(value, gives);
  return { code, message, details };
}

/** The example a status shows unless the route gives its own. */
export const DEFAULT_ERROR_EXAMPLES: Record<number, ErrorExample> = {
  400: {
    code: 'VALIDATION_FAILED',
    message: 'Unknown field "foo" in body',
    details: [{ field: 'body', message: 'must NOT have additional properties', unknownField: 'foo' }],
  },
  401: { code: 'UNAUTHORIZED', message: 'A valid bearer token is required' },
  403: {
    code: 'FORBIDDEN',
    message: 'Role "viewer" may not call this route',
    details: { role: 'viewer', allowedRoles: ['admin', 'operator'] },
  },
  404: {
    code: 'NOT_FOUND',
    message: 'Operation op_lx2k9a1b2c3d4e5f6 does not exist',
    details: { operation: 'op_lx2k9a1b2c3d4e5f6' },
  },
  408: {
    code: 'REQUEST_TIMEOUT',
    message: 'The request was not received within 30000 ms (BLASTGATE_REQUEST_TIMEOUT_MS); nothing was created',
    details: { limitMs: 30000 },
  },
  409: {
    code: 'INVALID_TRANSITION',
    message: 'cannot resume an operation that is completed',
    details: { operationId: 'op_lx2k9a1b2c3d4e5f6', state: 'completed' },
  },
  413: {
    code: 'PAYLOAD_TOO_LARGE',
    message: 'Body is larger than the 67108864 bytes this route accepts',
    details: { maxBytes: 67108864 },
  },
  415: {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: 'Content type text/csv is not accepted here; send application/json or application/x-ndjson',
    details: { contentType: 'text/csv', accepted: ['application/json', 'application/x-ndjson'] },
  },
  422: {
    code: 'PLAN_REJECTED',
    message:
      'The operation was rejected: 1 ID not in the registry (unknown). Nothing will run; every offending ID is listed at /v1/operations/op_lx2k9a1b2c3d4e5f6/report. Resubmit a corrected list (with a new Idempotency-Key).',
    details: {
      operationId: 'op_lx2k9a1b2c3d4e5f6',
      counts: { ok: 1, unknown: 1 },
      offenders: { unknown: [{ id: 'app_9f2c3' }] },
      reportUrl: '/v1/operations/op_lx2k9a1b2c3d4e5f6/report',
    },
  },
  429: {
    code: 'RATE_LIMITED',
    message: 'Rate limit of 600 requests per 60 s for this token reached; retry in 12 s',
    details: { limit: 600, windowMs: 60000, retryAfterSeconds: 12, budget: 'api' },
  },
  503: {
    code: 'OVERLOADED',
    message: 'The API is shedding load (event loop delay); retry in 5 s',
    details: { reason: 'eventLoopDelay', value: 812, limit: 500, blocked: false },
  },
};

/** Route-specific examples for statuses whose code depends on the route. */
export const ERROR_EXAMPLES = {
  idempotencyKeyReused: {
    code: 'IDEMPOTENCY_KEY_REUSED',
    message:
      'This Idempotency-Key belongs to operation op_lx2k9a1b2c3d4e5f6 (planned), submitted with a different request body; use a new key for a different request',
    details: { idempotencyKey: 'cleanup-2042', operationId: 'op_lx2k9a1b2c3d4e5f6', state: 'planned' },
  },
  tokenRevoked: {
    code: 'TOKEN_REVOKED',
    message: 'Token "ci-pipeline" was revoked; a revoked token cannot be rotated',
    details: { tokenId: '0b9f6a3e-2c1d-4e8f-9a7b-5c6d7e8f9a0b', revokedAt: '2026-11-24T12:00:00.000Z' },
  },
  nothingToRestore: {
    code: 'NOTHING_TO_RESTORE',
    message:
      'Blastgate deleted nothing of tenant tn_acme that is still deleted (what was rolled back or restored since is not deleted)',
    details: { scope: { kind: 'tenant', tenantId: 'tn_acme', deletedSince: null, asOf: null } },
  },
  // The scope's deleted resources were all left out (with none: "Nothing in this scope is deleted
  // and not purged yet"); details.leftOut counts them by reason, with the first IDs of each.
  nothingToPurge: {
    code: 'NOTHING_TO_PURGE',
    message:
      'The only deleted resource in this scope was left out: 1 restore_uncertain (a restore of it went out with its outcome unknown, so it may be live again; restore it again to settle it: app_8f3k2m1q); nothing to purge',
    details: {
      scope: { kind: 'tenant', tenantId: 'tn_acme', deletedSince: null, asOf: null },
      leftOut: {
        purged: 0,
        ids: [],
        erased: 0,
        restored: 0,
        deletedAgain: 0,
        uncertain: 0,
        activeAgain: 0,
        restoreUncertain: 1,
        items: [
          {
            id: 'app_8f3k2m1q',
            reason: 'restore_uncertain',
            by: 'op_lx2k9a1b2c3d4e5f6',
            detail:
              'a restore of it by op_lx2k9a1b2c3d4e5f6 since its delete went out and its outcome is unknown: it may be live again; restore it again to settle it (a later purge takes it once its delete stands)',
          },
        ],
      },
    },
  },
  invalidTypeDeclaration: {
    code: 'INVALID_TYPE_DECLARATION',
    message: 'types[0].idPattern: not a valid regular expression',
    details: [
      {
        field: 'types[0].idPattern',
        problem: 'invalid_regex',
        value: '^app_[',
        message: 'not a valid regular expression',
      },
    ],
  },
  adapterInUse: {
    code: 'ADAPTER_IN_USE',
    message:
      'Type app would reach registry instead of http https://apps.internal/api, and operation op_lx2k9a1b2c3d4e5f6 (running) is acting on it through http https://apps.internal/api: its next calls would go to the other system. Nothing was written. Let it finish, or abort or roll it back first; a change that keeps the kind and base URL (timeouts, templates) is accepted',
    details: {
      inUse: [
        {
          type: 'app',
          operationId: 'op_lx2k9a1b2c3d4e5f6',
          operationState: 'running',
          was: 'http https://apps.internal/api',
          now: 'registry',
        },
      ],
    },
  },
  duplicateTenantId: {
    code: 'DUPLICATE_TENANT_ID',
    message: 'Tenant tn_acme appears more than once; nothing was written',
    details: [{ field: 'tenants[3].id', id: 'tn_acme', firstIndex: 0 }],
  },
  registryRejected: {
    code: 'REGISTRY_REJECTED',
    message: '1 of 2 rows were rejected; nothing was written',
    details: {
      received: 2,
      rejectedRows: 1,
      counts: { unknown_tenant: 1 },
      offenders: [{ line: 2, id: 'app_8f3k2m1q', problem: 'unknown_tenant', value: 'tn_nope' }],
    },
  },
  planHashMismatch: {
    code: 'PLAN_HASH_MISMATCH',
    message:
      'the approval is for a different plan than the current one (planHash e3b0c44298fc…); review the plan again: GET /v1/operations/op_lx2k9a1b2c3d4e5f6 shows it and the planHash to approve',
    details: { operationId: 'op_lx2k9a1b2c3d4e5f6', state: 'planned' },
  },
  selfApproval: {
    code: 'SELF_APPROVAL',
    message: 'the requester cannot approve their own operation',
    details: { operationId: 'op_lx2k9a1b2c3d4e5f6', state: 'planned' },
  },
  lastAdminToken: {
    code: 'LAST_ADMIN_TOKEN',
    message: 'Token "admin" is the last active admin token; create another admin token before revoking it',
    details: { tokenId: '0b9f6a3e-2c1d-4e8f-9a7b-5c6d7e8f9a0b', name: 'admin' },
  },
  tokenNameTaken: {
    code: 'TOKEN_NAME_TAKEN',
    message:
      'A token named "ci-bot" is in use (0b9f6a3e-2c1d-4e8f-9a7b-5c6d7e8f9a0b, role requester); give this one another name, or revoke that one first',
    details: { field: 'name', name: 'ci-bot', tokenId: '0b9f6a3e-2c1d-4e8f-9a7b-5c6d7e8f9a0b' },
  },
  // A cursor a list did not give, on each list that takes one (test/http/cursors.test.ts checks
  // that the server words them so).
  invalidCursor: cursorRefusal('zzzz', 'an operation ID'),
  invalidTenantCursor: cursorRefusal('tn_nope', "a tenant ID of this operation's items"),
  invalidItemCursor: cursorRefusal('999', "the seq of one of this operation's items"),
  invalidReportCursor: cursorRefusal('999', "the index of one of this report's entries"),
  tenantNotFound: { code: 'NOT_FOUND', message: 'Tenant tn_nope does not exist', details: { tenant: 'tn_nope' } },
  resourceNotFound: {
    code: 'NOT_FOUND',
    message: 'Resource app_nope does not exist',
    details: { resource: 'app_nope' },
  },
  tokenNotFound: {
    code: 'NOT_FOUND',
    message: 'Token 0b9f6a3e-2c1d-4e8f-9a7b-5c6d7e8f9a0b does not exist',
    details: { token: '0b9f6a3e-2c1d-4e8f-9a7b-5c6d7e8f9a0b' },
  },
  // For routes on other branches of issue 9 (webhooks, events), to wire when they are merged.
  invalidLastEventId: {
    code: 'INVALID_LAST_EVENT_ID',
    message: 'Last-Event-ID must be an event id this stream sent',
    details: { lastEventId: 'abc' },
  },
  webhookDeleted: {
    code: 'WEBHOOK_DELETED',
    message: 'webhook wh_3k2m1q was deleted',
    details: { webhook: 'wh_3k2m1q' },
  },
  webhookDisabled: {
    code: 'WEBHOOK_DISABLED',
    message: 'webhook wh_3k2m1q is disabled: enable it (PATCH enabled: true) before redelivering to it',
    details: { webhook: 'wh_3k2m1q' },
  },
  deliveriesNotRedeliverable: {
    code: 'DELIVERIES_NOT_REDELIVERABLE',
    message:
      'deliveries 41 (delivered), 99 (not a delivery of this endpoint) cannot be redelivered: only failed or cancelled ones can; nothing was changed',
    details: { unknown: ['99'], notEnded: [{ id: '41', status: 'delivered' }] },
  },
  webhookHostNotAllowed: {
    code: 'WEBHOOK_HOST_NOT_ALLOWED',
    message: 'url host hooks.example.com is not in BLASTGATE_DOWNSTREAM_ALLOW (127.0.0.1, *.internal)',
    details: { field: 'url', allowed: ['127.0.0.1', '*.internal'] },
  },
  tooManyStreams: {
    code: 'TOO_MANY_STREAMS',
    message: 'This token already has 10 event streams open (BLASTGATE_SSE_MAX_PER_TOKEN); close one first',
    details: { max: 10 },
  },
} satisfies Record<string, ErrorExample>;

/**
 * The codes each status may carry, as the server answers them: what the OpenAPI test checks every
 * documented example against (a 401 example must not show a 400's code).
 */
export const CODES_BY_STATUS: Record<number, readonly string[]> = {
  400: [
    'VALIDATION_FAILED',
    'MALFORMED_BODY',
    'MALFORMED_NDJSON',
    'BAD_URL',
    'MISSING_HOST',
    'DUPLICATE_HEADER',
    'SPEC_IN_QUERY',
    'EMPTY_BODY',
    'EMPTY_ID_LIST',
    'EMPTY_IMPORT',
    'INVALID_ID',
    'INVALID_IDS',
    'LINE_TOO_LONG',
    'BODY_TOO_DEEP',
    'DUPLICATE_KEY',
    'FORBIDDEN_KEY',
    'EXPIRY_NOT_IN_FUTURE',
    'SCOPE_NOT_APPLICABLE',
    'INVALID_LAST_EVENT_ID',
    'INVALID_CURSOR',
  ],
  401: ['UNAUTHORIZED', 'TOKEN_EXPIRED', 'TOKEN_REVOKED', 'TOKEN_ROTATED'],
  403: ['FORBIDDEN', 'SELF_APPROVAL'],
  404: ['NOT_FOUND', 'ROUTE_NOT_FOUND'],
  405: ['METHOD_NOT_ALLOWED'],
  408: ['REQUEST_TIMEOUT'],
  409: [
    'INVALID_TRANSITION',
    'FROZEN',
    'OPERATION_EXPIRED',
    'DUPLICATE_APPROVAL',
    'PLAN_HASH_MISMATCH',
    'PLAN_STALE',
    'RESOURCES_IN_FLIGHT',
    'ADAPTER_CHANGED',
    'ADAPTER_IN_USE',
    'ROLLBACK_NOT_SUPPORTED',
    'IDEMPOTENCY_KEY_REUSED',
    'OPERATION_LIVE',
    'TOKEN_REVOKED',
    'TOKEN_EXPIRED',
    'LAST_ADMIN_TOKEN',
    'TOKEN_NAME_TAKEN',
    'WEBHOOK_DELETED',
    'WEBHOOK_DISABLED',
    'DELIVERIES_NOT_REDELIVERABLE',
  ],
  413: ['PAYLOAD_TOO_LARGE', 'TOO_MANY_IDS'],
  415: ['UNSUPPORTED_MEDIA_TYPE'],
  422: [
    'PLAN_REJECTED',
    'HARD_MODE_REPLACED',
    'UNKNOWN_TARGET_TYPE',
    'CASCADE_TOO_DEEP',
    'NOT_A_DELETE',
    'NOTHING_TO_RESTORE',
    'NOTHING_TO_PURGE',
    'SCOPE_CONFLICT',
    'SCOPE_REQUIRED',
    'SCOPE_INCOMPLETE',
    'AS_OF_IN_FUTURE',
    'DELETED_SINCE_IN_FUTURE',
    'DUE_BEFORE_IN_FUTURE',
    'INVALID_TYPE_DECLARATION',
    'ADAPTER_CONFIG_INVALID',
    'DUPLICATE_TENANT_ID',
    'REGISTRY_REJECTED',
    'INVALID_EVENT',
    'WEBHOOK_URL_INVALID',
    'WEBHOOK_HOST_NOT_ALLOWED',
    'UNKNOWN_EVENT_TYPE',
  ],
  429: ['RATE_LIMITED', 'TOO_MANY_STREAMS'],
  503: ['OVERLOADED', 'DATABASE_BUSY', 'HANDLER_TIMEOUT', 'UPLOADS_BUSY', 'DEPENDENCY_UNAVAILABLE'],
};
