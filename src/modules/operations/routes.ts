// Operation routes: submit (JSON inline or NDJSON upload; plain-text upload on its own path, whose
// spec is in the query string), and read back.
import { Type } from '@fastify/type-provider-typebox';
import type { Readable } from 'node:stream';
import { BadRequestError } from '../../lib/errors.ts';
import { ERROR_EXAMPLES, type ErrorExample } from '../../lib/error-examples.ts';
import { ListFilter, listFilters, nextLink, splitPage, readLimit } from '../../lib/list-query.ts';
import { errorResponse, errorResponses, IdParams, IdString, MAX_INT4, type App } from '../../lib/schemas.ts';
import { escapedIfNeeded } from '../../lib/text.ts';
import { NDJSON, TEXT } from '../../plugins/uploads.ts';
import { validatedByHandler } from '../../plugins/validation.ts';
import { MAX_STREAMED_IDS } from './intake.ts';
import { readIdStream } from './id-stream.ts';
import { heldOrDeletedBy, ID_CLASSES } from './planner.ts';
import { PURGE_CLASSES } from '../purges/schemas.ts';
import { RESTORE_CLASSES } from '../restores/schemas.ts';
import { checkItemCursor, checkItemWave, checkReportCursor } from './cursors.ts';
import { listRoute } from './list.ts';
import { operationReads } from './repository.ts';
import { operationService, serverTiming, type SubmitResult } from './service.ts';
import {
  CreateOperationBody,
  DryRunView,
  EXAMPLE_IDS,
  EXAMPLE_SPEC,
  ITEM_STATES,
  ReportPage,
  TextUploadQuery,
} from './schemas.ts';
import { ItemsPage } from './item-schemas.ts';
import { dryRunRejected, planRejected, readSubmission, STREAM_LIMITS, SUBMIT_AUTH, textSpec } from './submission.ts';
import type { ScopeReport } from './scope.ts';
import { sendView } from './view-json.ts';
import { operationView } from './views.ts';
import { coalescer } from '../../lib/coalesce.ts';

const OperationIdParams = IdParams('Operation ID', 'op_lx2k9a1b2c3d4e5f6');
/** Page sizes are optional: the validator fills in the default, so handlers always have one. */
const Limit = (maximum: number, dflt: number) =>
  Type.Optional(Type.Integer({ minimum: 1, maximum, default: dflt, description: `Page size (default ${dflt})` }));
const TEXT_ROUTE = '/v1/operations/text';
const SUBMIT_RESPONSES = {
  201: { ...Type.Ref('Operation'), description: 'Planned: the operation with its plan' },
  200: Type.Union([Type.Ref('Operation'), DryRunView], {
    description: 'Idempotent replay of a planned operation, or a dry-run plan',
    example: { dryRun: true, plan: { itemCount: 2 } },
  }),
  ...errorResponses(400, 401, 403, 413, 415, 422),
  409: errorResponse(409, ERROR_EXAMPLES.idempotencyKeyReused),
};
const NOT_GIVEN = '; one the list did not give is 400 INVALID_CURSOR';
/** A position (seq, index) as the list writes it; cursors.ts refuses anything else as INVALID_CURSOR. */
const POSITION_CURSOR = Type.Optional(
  IdString({ description: 'nextCursor of the previous page, or follow links.next' + NOT_GIVEN }),
);
/** A page's cursor and its link: the next page with the same filters, as every list gives them. */
const paged = (path: string, query: Record<string, unknown>, nextCursor: string | null) => ({
  nextCursor,
  links: { next: nextLink(path, query, 'cursor', nextCursor) },
});
/** The paged reads of one operation: their 400 shows the refusal of a cursor they did not give. */
const pageErrors = (example: ErrorExample) => ({ ...errorResponses(401, 404), 400: errorResponse(400, example) });
/** The text route takes text/plain only: its 415 says so (the default example names JSON). */
const TEXT_SUBMIT_RESPONSES = {
  ...SUBMIT_RESPONSES,
  415: errorResponse(415, {
    code: 'UNSUPPORTED_MEDIA_TYPE',
    message: 'Content type application/json is not accepted here; use text/plain',
    details: { contentType: 'application/json', accepted: ['text/plain'] },
  }),
};
const IDEMPOTENCY_HEADERS = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 200,
      pattern: '^[\\x21-\\x7e]+$',
      description: 'Makes retries safe',
    }),
  ),
});
const SUBMIT_RULES =
  "Resolves every ID against the registry. Any ID that is unknown, of another type, not matching the type's ID pattern, " +
  "duplicated, outside the token's scope (out_of_scope), already deleted, protected or part of another live operation rejects the whole operation (422 PLAN_REJECTED with a per-ID report; the rejection is recorded, and its full report is at details.reportUrl). " +
  'Otherwise 201 with the plan. A dry run (`dryRun: true`) stores nothing: its rejection lists the first 100 offenders of each class inline (details.offendersComplete says whether that is all of them) and has no report URL; submit without dryRun for the recorded rejection and its full report. ' +
  '`Idempotency-Key`: the same key with the same body from the same token returns the same operation (also a rejected one); with another body, or from another token, 409 (a corrected list needs a new key). ' +
  'A planned, rejected or dry-run answer carries `Server-Timing` with the milliseconds each stage took: `intake` (body read and staged), `classify`, `lock` (resource locks), `plan`, `ledger` (item ledger written), `commit`.';

export default async function operationRoutes(app: App) {
  const reads = operationReads(app.db.pool);
  // Polled by dashboards, pipelines and the live view, often many at once: concurrent GETs of one
  // operation share one read (never one that started before they arrived: lib/coalesce.ts).
  const viewOf = coalescer((id: string) => reads.view(id, { drills: true }));
  const service = operationService({
    pool: app.db.pool,
    uploads: app.db.uploads,
    reads,
    metrics: app.metrics,
    log: app.log,
  });

  app.post(
    '/operations',
    {
      config: {
        auth: SUBMIT_AUTH,
        audited: true,
        inlineIds: true,
        uploadLimit: STREAM_LIMITS.maxBytes,
        mediaTypeHints: {
          [TEXT]: `Send a text/plain ID list to POST ${TEXT_ROUTE}, with the spec in the query string`,
        },
      },
      schema: {
        operationId: 'createOperation',
        tags: ['operations'],
        summary: 'Submit a destructive operation',
        description: `${SUBMIT_RULES} Bodies: application/json (up to 100,000 IDs inline); application/x-ndjson (first line the spec, then one ID per line as a JSON string, up to 1,000,000). A plain-text ID list goes to POST ${TEXT_ROUTE}. No query parameters.`,
        headers: IDEMPOTENCY_HEADERS,
        body: {
          content: {
            // Validated by readSubmission (jsonSubmission), which the CI intake queue calls too.
            'application/json': { schema: validatedByHandler(CreateOperationBody) },
            [NDJSON]: {
              schema: Type.String({
                description: 'Line 1: OperationSpec JSON. Then one ID per line: "app_1" or {"id":"app_1"}',
                example: `${JSON.stringify(EXAMPLE_SPEC)}\n${EXAMPLE_IDS.map((id) => `"${id}"`).join('\n')}\n`,
              }),
            },
          },
        } as never,
        response: SUBMIT_RESPONSES,
      },
    },
    async (req, reply) => {
      const query = req.query as Record<string, unknown>;
      const queryFields = Object.keys(query).filter((k) => query[k] !== undefined);
      if (queryFields.length)
        throw new BadRequestError(
          'SPEC_IN_QUERY',
          `Query parameters (${queryFields.join(', ')}) are not taken here: put the spec in the body, or send a text/plain ID list to POST ${TEXT_ROUTE} with the spec in the query string`,
          { fields: queryFields },
        );
      const { spec, ids, maxIds } = await readSubmission(req.mediaType, req.body);
      const key = req.headers['idempotency-key'] ?? null;
      const result = await service.submit({
        spec,
        ids,
        maxIds,
        idempotencyKey: key,
        principal: req.principal!,
        abandoned: () => reply.sent,
      });
      return respond(result, reply, req);
    },
  );

  app.post(
    '/operations/text',
    {
      config: { auth: SUBMIT_AUTH, audited: true, uploadLimit: STREAM_LIMITS.maxBytes },
      schema: {
        operationId: 'createOperationFromText',
        tags: ['operations'],
        summary: 'Submit a destructive operation as a plain-text ID list',
        description: `The same operation as POST /v1/operations, for an ID list as text/plain (one ID per line, up to 1,000,000; blank lines ignored) with the spec in the query string: targetType, reason and ticket are required. ${SUBMIT_RULES}`,
        headers: IDEMPOTENCY_HEADERS,
        querystring: TextUploadQuery,
        body: {
          content: {
            [TEXT]: {
              schema: Type.String({ description: 'One ID per line', example: `${EXAMPLE_IDS.join('\n')}\n` }),
            },
          },
        } as never,
        response: TEXT_SUBMIT_RESPONSES,
      },
    },
    async (req, reply) => {
      const spec = textSpec(req.query);
      const { batches: ids } = await readIdStream(req.body as Readable, STREAM_LIMITS, {
        format: 'text',
        head: false,
        slowId: (line) => line.text,
      });
      const key = req.headers['idempotency-key'] ?? null;
      const result = await service.submit({
        spec,
        ids,
        maxIds: MAX_STREAMED_IDS,
        idempotencyKey: key,
        principal: req.principal!,
        abandoned: () => reply.sent,
      });
      return respond(result, reply, req);
    },
  );

  async function respond(
    result: SubmitResult,
    reply: { status(n: number): { send(b: unknown): unknown }; header(k: string, v: string): unknown },
    req: { auditedByService?: boolean },
  ) {
    if (result.timings) reply.header('server-timing', serverTiming(result.timings));
    switch (result.kind) {
      case 'planned':
        if (result.replayed) reply.header('idempotent-replayed', 'true');
        return reply
          .status(result.replayed ? 200 : 201)
          .send(operationView(await reads.withApprovals(result.operation)));
      case 'dry_run':
        return reply.status(200).send({ dryRun: true, plan: result.plan });
      case 'dry_run_rejected':
        throw dryRunRejected(result.classification.counts, result.classification.samples, result.scope);
      case 'rejected': {
        req.auditedByService = true;
        if (result.replayed) reply.header('idempotent-replayed', 'true');
        const r = result.operation.rejection as unknown as {
          counts: Record<string, number>;
          offenders: unknown;
          scope?: ScopeReport;
        };
        throw planRejected(r.counts, r.offenders, result.operation.id, r.scope ?? null);
      }
    }
  }

  listRoute(app);

  app.get(
    '/operations/:id',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'getOperation',
        tags: ['operations'],
        summary: 'Get an operation',
        description: 'State, plan, current wave, per-wave item counts, halt reason and restore drills.',
        params: OperationIdParams,
        response: { 200: { ...Type.Ref('Operation'), description: 'The operation' }, ...errorResponses(401, 404) },
      },
    },
    async (req, reply) => {
      const v = await viewOf(req.params.id);
      return sendView(reply, v, await app.queueHolds(v.op.state, v.lastProgressAt));
    },
  );

  app.get(
    '/operations/:id/items',
    {
      config: { auth: 'any' },
      preValidation: listFilters({ state: ITEM_STATES }),
      schema: {
        operationId: 'listOperationItems',
        tags: ['operations'],
        summary: "List an operation's items",
        description:
          'The item ledger in wave order, paginated; filter by wave (numbered from 0, as `currentWave`; a wave the operation does not have is 400) and state (several states: `state=failed&state=pending` or `state=failed,pending`).',
        params: OperationIdParams,
        querystring: Type.Object(
          {
            wave: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_INT4 })),
            state: ListFilter(ITEM_STATES, 'Only items in one of these ledger states'),
            limit: Limit(1000, 100),
            cursor: POSITION_CURSOR,
          },
          { additionalProperties: false },
        ),
        response: { 200: ItemsPage, ...pageErrors(ERROR_EXAMPLES.invalidItemCursor) },
      },
    },
    async (req) => {
      const op = await reads.get(req.params.id);
      const cursor = await checkItemCursor(app.db.pool, op.id, req.query.cursor);
      await checkItemWave(app.db.pool, op.id, req.query.wave);
      const { items: rows, last } = splitPage(
        await reads.items({
          operationId: op.id,
          ...req.query,
          cursor,
          limit: readLimit(req.query.limit!),
          rollingBack: op.state === 'rolling_back',
        }),
        req.query.limit!,
      );
      // When each resource's retention ends (soft-deleted by an operation, not purged yet). One
      // primary-key lookup per ID: with `id = ANY(…)` PostgreSQL scanned the whole registry.
      const due = await app.db.pool.query<{ id: string; purge_after: Date }>(
        `SELECT r.id, r.purge_after FROM unnest($1::text[]) AS i(id)
         CROSS JOIN LATERAL (SELECT id, purge_after FROM resources r WHERE r.id = i.id AND r.purge_after IS NOT NULL) r`,
        [rows.map((r) => r.resourceId)],
      );
      const purgeAfter = new Map(due.rows.map((x) => [x.id, x.purge_after.toISOString()]));
      return {
        items: rows.map((r) => ({
          seq: r.seq,
          resourceId: r.resourceId,
          tenantId: r.tenantId,
          type: r.resourceType ?? op.targetType,
          parentSeq: r.parentSeq,
          wave: r.wave,
          state: r.state,
          attempts: r.attempts,
          lastError: r.lastError,
          purgeAfter: purgeAfter.get(r.resourceId) ?? null,
          updatedAt: r.updatedAt.toISOString(),
        })),
        ...paged(`/v1/operations/${op.id}/items`, req.query, last && String(last.seq)),
      };
    },
  );

  app.get(
    '/operations/:id/report',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'getRejectionReport',
        tags: ['operations'],
        summary: 'Full report of a rejected plan',
        description: 'Every offending ID with its class, actual type and tenant, in submission order.',
        params: OperationIdParams,
        querystring: Type.Object(
          {
            // A delete's classes and a restore's (not_deleted, superseded, …).
            class: Type.Optional(
              Type.Union(
                [...new Set([...ID_CLASSES, ...RESTORE_CLASSES, ...PURGE_CLASSES])]
                  .filter((c) => c !== 'ok')
                  .map((c) => Type.Literal(c)),
              ),
            ),
            limit: Limit(5000, 1000),
            cursor: POSITION_CURSOR,
          },
          { additionalProperties: false },
        ),
        response: { 200: ReportPage, ...pageErrors(ERROR_EXAMPLES.invalidReportCursor) },
      },
    },
    async (req) => {
      const op = await reads.get(req.params.id);
      const cursor = await checkReportCursor(app.db.pool, op.id, req.query.cursor);
      const { items: rows, last } = splitPage(
        await reads.rejections({
          operationId: op.id,
          class: req.query.class,
          cursor,
          limit: readLimit(req.query.limit!),
        }),
        req.query.limit!,
      );
      return {
        counts: (op.rejection as { counts?: Record<string, number> } | null)?.counts ?? {},
        items: rows.map((r) => ({
          index: r.ordinal,
          id: r.resourceId,
          ...escapedIfNeeded(r.resourceId),
          class: r.class,
          actualType: r.actualType,
          tenantId: r.tenantId,
          ...heldOrDeletedBy(r.class, r.heldBy),
          ...(r.via ? { via: { id: r.via, type: r.viaType, tenantId: r.viaTenantId } } : {}),
          ...(r.purgeAfter ? { purgeAfter: r.purgeAfter.toISOString() } : {}),
          ...(r.state ? { state: r.state } : {}),
        })),
        ...paged(`/v1/operations/${op.id}/report`, req.query, last && String(last.ordinal)),
      };
    },
  );
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The service already wrote this request's audit event (so the refusal hook does not). */
    auditedByService?: boolean;
  }
}
