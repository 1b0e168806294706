// Operation routes: submit (JSON inline, NDJSON or plain-text upload), and read back.
import { Type } from '@fastify/type-provider-typebox';
import type { Readable } from 'node:stream';
import { BadRequestError } from '../../lib/errors.ts';
import { lineBatches, parseJsonLine, type Line } from '../../lib/lines.ts';
import { errorResponses, type App } from '../../lib/schemas.ts';
import { NDJSON, TEXT } from '../../plugins/uploads.ts';
import { validateValue } from '../../plugins/validation.ts';
import {
  inlineBatches,
  MAX_INLINE_IDS,
  MAX_STREAMED_IDS,
  ndjsonIdBatches,
  textIdBatches,
  type IdBatches,
} from './intake.ts';
import { ID_CLASSES } from './planner.ts';
import { RESTORE_CLASSES } from '../restores/schemas.ts';
import { operationReads } from './repository.ts';
import { operationService, type SubmitResult } from './service.ts';
import {
  CreateOperationBody,
  CreateOperationQuery,
  DryRunView,
  OperationSpec,
  OperationsPage,
  ReportPage,
} from './schemas.ts';
import { ItemsPage } from './item-schemas.ts';
import { operationView, planRejected } from './views.ts';

const STREAM_LIMITS = { maxBytes: 256 * 1024 * 1024, maxLineBytes: 64 * 1024, batchSize: 10_000 };
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100, description: 'Operation id' }) });

export default async function operationRoutes(app: App) {
  const reads = operationReads(app.db.prisma);
  const service = operationService({ pool: app.db.pool, reads, metrics: app.metrics, log: app.log });

  app.post(
    '/operations',
    {
      config: { auth: ['requester'], audited: true },
      schema: {
        operationId: 'createOperation',
        tags: ['operations'],
        summary: 'Submit a destructive operation',
        description:
          "Resolves every ID against the registry. Any ID that is unknown, of another type, not matching the type's ID pattern, " +
          'duplicated, already deleted or protected rejects the whole operation (422 PLAN_REJECTED with a per-ID report; the rejection is recorded). ' +
          'Otherwise 201 with the plan. Bodies: application/json (up to 100,000 IDs inline); application/x-ndjson (first line the spec, then one ID per line as a JSON string, up to 1,000,000); ' +
          'text/plain (one ID per line, spec in the query string). `Idempotency-Key`: the same key with the same body returns the same operation; with another body 409.',
        headers: Type.Object({
          'idempotency-key': Type.Optional(
            Type.String({
              minLength: 1,
              maxLength: 200,
              pattern: '^[\\x21-\\x7e]+$',
              description: 'Makes retries safe',
            }),
          ),
        }),
        querystring: CreateOperationQuery,
        body: {
          content: {
            'application/json': { schema: CreateOperationBody },
            [NDJSON]: {
              schema: Type.String({
                description: 'Line 1: OperationSpec JSON. Then one ID per line: "app_1" or {"id":"app_1"}',
                example: '{"targetType":"app","reason":"cleanup","ticket":"CHG-1"}\n"app_1"\n"app_2"\n',
              }),
            },
            [TEXT]: {
              schema: Type.String({
                description: 'One ID per line; spec in the query string',
                example: 'app_1\napp_2\n',
              }),
            },
          },
        } as never,
        response: {
          201: { ...Type.Ref('Operation'), description: 'Planned: the operation with its plan' },
          200: Type.Union([Type.Ref('Operation'), DryRunView], {
            description: 'Idempotent replay of a planned operation, or a dry-run plan',
            example: { dryRun: true, plan: { itemCount: 2 } },
          }),
          ...errorResponses(400, 401, 403, 409, 413, 415, 422),
        },
      },
    },
    async (req, reply) => {
      const key = req.headers['idempotency-key'] ?? null;
      const { spec, ids, maxIds } = await readSubmission(req.headers['content-type'], req.body, req.query);
      const result = await service.submit({ spec, ids, maxIds, idempotencyKey: key, principal: req.principal! });
      return respond(result, reply, req);
    },
  );

  function respond(
    result: SubmitResult,
    reply: { status(n: number): { send(b: unknown): unknown }; header(k: string, v: string): unknown },
    req: { auditedByService?: boolean },
  ) {
    switch (result.kind) {
      case 'planned':
        if (result.replayed) reply.header('idempotent-replayed', 'true');
        return reply.status(result.replayed ? 200 : 201).send(operationView(result.operation));
      case 'dry_run':
        return reply.status(200).send({ dryRun: true, plan: result.plan });
      case 'dry_run_rejected':
        throw planRejected(result.classification.counts, result.classification.samples, null);
      case 'rejected': {
        req.auditedByService = true;
        if (result.replayed) reply.header('idempotent-replayed', 'true');
        const r = result.operation.rejection as { counts: Record<string, number>; offenders: unknown };
        throw planRejected(r.counts, r.offenders, result.operation.id);
      }
    }
  }

  app.get(
    '/operations',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'listOperations',
        tags: ['operations'],
        summary: 'List operations',
        description: 'Newest first; filter by state.',
        querystring: Type.Object(
          {
            state: Type.Optional(Type.String({ maxLength: 20 })),
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
            cursor: Type.Optional(Type.String({ maxLength: 100 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: OperationsPage, ...errorResponses(400, 401) },
      },
    },
    async (req) => {
      const rows = await reads.list(req.query);
      return {
        items: rows.map((r) => operationView(r)),
        nextCursor: rows.length === req.query.limit ? rows[rows.length - 1]!.id : null,
      };
    },
  );

  app.get(
    '/operations/:id',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'getOperation',
        tags: ['operations'],
        summary: 'Get an operation',
        description: 'State, plan, current wave, per-wave item counts and halt reason.',
        params: IdParams,
        response: { 200: { ...Type.Ref('Operation'), description: 'The operation' }, ...errorResponses(401, 404) },
      },
    },
    async (req) => {
      const op = await reads.get(req.params.id);
      return operationView(op, await reads.waveProgress(op.id), await reads.unfinished(op));
    },
  );

  app.get(
    '/operations/:id/items',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'listOperationItems',
        tags: ['operations'],
        summary: "List an operation's items",
        description: 'The item ledger in wave order, paginated; filter by wave and state.',
        params: IdParams,
        querystring: Type.Object(
          {
            wave: Type.Optional(Type.Integer({ minimum: 0 })),
            state: Type.Optional(Type.String({ maxLength: 20 })),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
            cursor: Type.Optional(Type.Integer({ minimum: -1, description: 'nextCursor of the previous page' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: ItemsPage, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const op = await reads.get(req.params.id);
      const rows = await reads.items({ operationId: op.id, ...req.query });
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
          updatedAt: r.updatedAt.toISOString(),
        })),
        nextCursor: rows.length === req.query.limit ? String(rows[rows.length - 1]!.seq) : null,
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
        params: IdParams,
        querystring: Type.Object(
          {
            // A delete's classes and a restore's (not_deleted, superseded, …).
            class: Type.Optional(
              Type.Union(
                [...new Set([...ID_CLASSES, ...RESTORE_CLASSES])].filter((c) => c !== 'ok').map((c) => Type.Literal(c)),
              ),
            ),
            limit: Type.Integer({ minimum: 1, maximum: 5000, default: 1000 }),
            cursor: Type.Optional(Type.Integer({ minimum: 0 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: ReportPage, ...errorResponses(400, 401, 404) },
      },
    },
    async (req) => {
      const op = await reads.get(req.params.id);
      const rows = await reads.rejections({
        operationId: op.id,
        class: req.query.class,
        cursor: req.query.cursor,
        limit: req.query.limit,
      });
      return {
        counts: (op.rejection as { counts?: Record<string, number> } | null)?.counts ?? {},
        items: rows.map((r) => ({
          index: r.ordinal,
          id: r.resourceId,
          class: r.class,
          actualType: r.actualType,
          tenantId: r.tenantId,
          ...(r.heldBy ? { heldBy: r.heldBy } : {}),
        })),
        nextCursor: rows.length === req.query.limit ? String(rows[rows.length - 1]!.ordinal) : null,
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

async function readSubmission(
  contentType: string | undefined,
  body: unknown,
  query: Record<string, unknown>,
): Promise<{ spec: OperationSpec; ids: IdBatches; maxIds: number }> {
  const media = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const queryFields = Object.keys(query).filter((k) => query[k] !== undefined);
  if (media !== TEXT && queryFields.length) {
    throw new BadRequestError(
      'SPEC_IN_QUERY',
      `Query parameters (${queryFields.join(', ')}) are only for text/plain uploads; put the spec in the body`,
      { fields: queryFields },
    );
  }
  if (media === NDJSON) {
    const it = lineBatches(body as Readable, STREAM_LIMITS)[Symbol.asyncIterator]();
    const first = await it.next();
    const head: Line | undefined = first.done ? undefined : first.value[0];
    if (!head) throw new BadRequestError('EMPTY_BODY', 'The NDJSON body is empty; line 1 must be the operation spec');
    const spec = validateValue<OperationSpec>(OperationSpec, parseJsonLine(head), 'line 1');
    const rest = first.done ? [] : first.value.slice(1);
    async function* lines(): AsyncGenerator<Line[]> {
      if (rest.length) yield rest;
      for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
    }
    return { spec, ids: ndjsonIdBatches(lines()), maxIds: MAX_STREAMED_IDS };
  }
  if (media === TEXT) {
    const spec = validateValue<OperationSpec>(OperationSpec, { ...query }, 'query');
    return { spec, ids: textIdBatches(lineBatches(body as Readable, STREAM_LIMITS)), maxIds: MAX_STREAMED_IDS };
  }
  const { ids, ...spec } = body as CreateOperationBody;
  return { spec, ids: inlineBatches(ids), maxIds: MAX_INLINE_IDS };
}
