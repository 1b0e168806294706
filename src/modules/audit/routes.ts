// Reading and verifying the audit log, and recording refused destructive requests.
import { Type } from '@fastify/type-provider-typebox';
import { listFilters, nextLink, splitPage, readLimit } from '../../lib/list-query.ts';
import { errorResponses, IdString, PageLinks, Text, type App } from '../../lib/schemas.ts';
import { AUDIT_OUTCOMES, auditAlone, listAudit, verifyAudit } from './repository.ts';
import { isUnreachable } from '../../plugins/db.ts';
import { escapeText, isStorable } from '../../lib/text.ts';

const AuditEvent = Type.Object(
  {
    seq: Type.Integer(),
    at: Type.String({ format: 'date-time' }),
    actor: Type.String(),
    action: Type.String(),
    outcome: Type.String(),
    operationId: Type.Union([Type.String(), Type.Null()]),
    payload: Type.Record(Type.String(), Type.Any()),
    prevHash: Type.String(),
    hash: Type.String(),
  },
  { $id: 'AuditEvent', description: 'One audit event, chained to the previous by prevHash' },
);

/** A free-form filter of the log: several values, repeated or comma-separated (lib/list-query.ts). */
const AuditFilter = (description: string) =>
  Type.Optional(
    Type.Array(Text({ minLength: 1, maxLength: 200 }), {
      minItems: 1,
      maxItems: 50,
      description: `${description}. Several: repeat the parameter or separate with commas`,
    }),
  );

export default async function auditRoutes(app: App) {
  app.get(
    '/audit',
    {
      config: { auth: 'any' },
      // An outcome the log never records is 400, not an empty page that reads as "nothing refused" (a trial).
      preValidation: listFilters({ action: null, actor: null, outcome: AUDIT_OUTCOMES }),
      schema: {
        operationId: 'listAudit',
        tags: ['audit'],
        summary: 'Read the audit log',
        description:
          'Events in order. Page with `after` = the last seq you saw (`nextAfter`), or follow `links.next`. Filters combine (all must hold); each takes several values (any of them).',
        querystring: Type.Object(
          {
            after: Type.Optional(
              Type.Integer({
                minimum: 0,
                maximum: Number.MAX_SAFE_INTEGER,
                description: 'Return events with seq greater than this',
              }),
            ),
            limit: Type.Optional(
              Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'Page size (default 100)' }),
            ),
            operationId: Type.Optional(IdString({ description: 'Only the events of this operation' })),
            action: AuditFilter(
              'Only these actions (`registry.tenants.upsert`), or a prefix ending in `*` (`registry.*`, `operation.*`)',
            ),
            actor: AuditFilter("Only events by these token names (the event's `actor`)"),
            outcome: AuditFilter(
              'Only events with these outcomes: `accepted`, `refused`, `info` (any other is 400 VALIDATION_FAILED)',
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object(
            { items: Type.Array(AuditEvent), nextAfter: Type.Union([Type.Integer(), Type.Null()]), links: PageLinks },
            {
              description: 'A page of events',
              example: {
                items: [
                  {
                    seq: 1,
                    at: '2026-11-24T12:00:00.000Z',
                    actor: 'bootstrap-admin',
                    action: 'token.create',
                    outcome: 'accepted',
                    operationId: null,
                    payload: {
                      tokenId: '0b5f4c1e-7f51-4a39-9a8e-3c2f3f0b2a11',
                      name: 'ci-pipeline',
                      role: 'requester',
                    },
                    prevHash: '0000…',
                    hash: 'ab12…',
                  },
                ],
                nextAfter: null,
                links: { next: null },
              },
            },
          ),
          ...errorResponses(400, 401),
        },
      },
    },
    async (req) => {
      // The validator filled in the default page size.
      const limit = req.query.limit!;
      const { items, last } = splitPage(await listAudit(app.db.pool, { ...req.query, limit: readLimit(limit) }), limit);
      const nextAfter = last?.seq ?? null;
      return {
        items,
        nextAfter,
        links: { next: nextLink('/v1/audit', req.query, 'after', nextAfter === null ? null : String(nextAfter)) },
      };
    },
  );

  app.get(
    '/audit/verify',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'verifyAudit',
        tags: ['audit'],
        summary: 'Verify the hash chain',
        description: 'Recomputes every event hash and link; reports the first broken event.',
        response: {
          200: Type.Object(
            {
              valid: Type.Boolean(),
              checked: Type.Integer(),
              brokenAt: Type.Union([Type.Integer(), Type.Null()]),
              reason: Type.Union([Type.String(), Type.Null()]),
              head: Type.Optional(Type.String()),
            },
            {
              description: 'Verification result',
              example: { valid: true, checked: 42, brokenAt: null, reason: null, head: 'ab12…' },
            },
          ),
          ...errorResponses(401),
        },
      },
    },
    async () => verifyAudit(app.db.pool),
  );
}

/** Longest operation ID a refusal records as given (IDs are far shorter; the params refuse longer). */
const MAX_ID = 200;

/**
 * The path's operation ID as the audit row can hold it, or null. A refused request's ID may be
 * anything (a NUL made the insert fail, and the refusal went unrecorded): such an ID is recorded
 * escaped in the payload (operationIdGiven) instead.
 */
const storableId = (id: string | null) => (id !== null && isStorable(id) && id.length <= MAX_ID ? id : null);

/** Refused destructive requests leave a trace too: who tried what, and why it was refused. */
export function installRefusalAudit(app: App) {
  app.addHook('onResponse', async (req, reply) => {
    if (!req.routeOptions.config.audited || reply.statusCode < 400 || req.auditedByService) return;
    const given = (req.params as { id?: string } | undefined)?.id ?? null;
    const stored = storableId(given);
    // A refused operator command is recorded on the control pool, like the command itself.
    await auditAlone(req.routeOptions.config.control ? app.db.control.pool : app.db.pool, {
      actor: req.principal?.name ?? 'anonymous',
      action: `${req.method} ${req.routeOptions.url}`,
      outcome: 'refused',
      operationId: stored,
      payload: {
        ...(given !== null && stored === null ? { operationIdGiven: escapeText(given.slice(0, MAX_ID)) } : {}),
        status: reply.statusCode,
        code: req.errorCode ?? null,
        requestId: req.id,
        tokenId: req.principal?.tokenId ?? null,
      },
    }).catch((err: unknown) =>
      // During an outage every request is refused for it, and none can be recorded: one line each,
      // without a stack trace per request (the refusal itself is 503 DEPENDENCY_UNAVAILABLE).
      isUnreachable(err)
        ? req.log.warn({ code: req.errorCode }, 'could not audit a refused request: the database cannot be reached')
        : req.log.error({ err }, 'could not audit a refused request'),
    );
  });
}
