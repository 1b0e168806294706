// /v1/admin/webhooks: admins register where Blastgate POSTs its events (see dispatch.ts), read each
// endpoint's delivery log, and rotate its signing secret. Every change is audited with the
// endpoint's origin only: the audit log is readable by every role, and a Slack-style URL's path is
// itself a credential.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ConflictError, NotFoundError, UnprocessableError } from '../../lib/errors.ts';
import { nextLink, splitPage, readLimit } from '../../lib/list-query.ts';
import { inTransaction } from '../../lib/sql.ts';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, type App } from '../../lib/schemas.ts';
import { appendAudit } from '../audit/repository.ts';
import { ALL_EVENTS, EVENT_TYPES, unknownEventTypes } from './events.ts';
import {
  cancelPending,
  getEndpoint,
  headSeq,
  insertEndpoint,
  listDeliveries,
  listEndpoints,
  updateEndpoint,
  withDeliveryCounts,
  type EndpointRow,
} from './repository.ts';
import {
  CreateBody,
  DeliveriesQuery,
  DeliveryPage,
  EndpointList,
  EndpointParams,
  EndpointStatus,
  EndpointView,
  EndpointWithSecret,
  ListQuery,
  UpdateBody,
} from './schemas.ts';
import { generateWebhookSecret, sealSecret } from './secrets.ts';
import { urlOrigin, webhookUrlProblem } from './url-policy.ts';
import { ensureCursor } from './dispatch.ts';
import { redeliverRoute } from './redeliver-route.ts';

// Admin-only configuration, listed with the other admin routes in the API docs.
const TAGS = ['admin'];
const ADMIN = { auth: ['admin'] as const, audited: true };

export default async function webhookRoutes(app: App, opts: { masterKey: Buffer }) {
  const checkUrl = (url: string) => {
    const p = webhookUrlProblem(url, app.downstream.allow);
    if (p)
      throw new UnprocessableError(p.code, p.message, { field: 'url', ...(p.allowed ? { allowed: p.allowed } : {}) });
  };
  const checkEvents = (events: string[]) => {
    const unknown = unknownEventTypes(events);
    if (unknown.length)
      throw new UnprocessableError(
        'UNKNOWN_EVENT_TYPE',
        `unknown event type${unknown.length > 1 ? 's' : ''} ${unknown.map((u) => `"${u}"`).join(', ')}: use "${ALL_EVENTS}" or any of ${EVENT_TYPES.join(', ')}`,
        { field: 'events', unknown, allowed: [ALL_EVENTS, ...EVENT_TYPES] },
      );
  };
  /** Runs a change of one live endpoint under its row lock, with its audit event. */
  const change = async (
    id: string,
    actor: string,
    fn: (tx: pg.PoolClient, before: EndpointRow) => Promise<{ row: EndpointRow; action: string; detail: object }>,
  ) =>
    inTransaction(app.db.pool, async (tx) => {
      const before = await getEndpoint(tx, id, true);
      if (!before) throw new NotFoundError('Webhook', id);
      if (before.deletedAt) throw new ConflictError('WEBHOOK_DELETED', `webhook ${id} was deleted`, { webhook: id });
      const { row, action, detail } = await fn(tx, before);
      await appendAudit(tx, {
        actor,
        action,
        outcome: 'accepted',
        payload: { webhookId: id, origin: urlOrigin(row.url), ...detail },
      });
      return row;
    });

  app.post(
    '/admin/webhooks',
    {
      config: ADMIN,
      schema: {
        operationId: 'createWebhook',
        tags: TAGS,
        summary: 'Register a webhook endpoint',
        description:
          'Events after this one are POSTed to the URL, signed the Standard Webhooks way (webhook-id, webhook-timestamp, webhook-signature) with a secret the server makes. The answer shows that secret once. 422 WEBHOOK_URL_INVALID, WEBHOOK_HOST_NOT_ALLOWED (the host is not in BLASTGATE_DOWNSTREAM_ALLOW) or UNKNOWN_EVENT_TYPE (named in details.unknown).',
        body: CreateBody,
        response: {
          201: EndpointWithSecret,
          ...errorResponses(400, 401, 403),
          422: errorResponse(422, ERROR_EXAMPLES.webhookHostNotAllowed),
        },
      },
    },
    async (req, reply) => {
      const b = req.body;
      checkUrl(b.url);
      checkEvents(b.events);
      const id = randomUUID();
      const secret = generateWebhookSecret();
      const actor = req.principal!.name;
      const row = await inTransaction(app.db.pool, async (tx) => {
        const seq = await headSeq(tx);
        await ensureCursor(tx, seq, actor);
        const created = await insertEndpoint(tx, {
          id,
          url: b.url,
          description: b.description ?? null,
          format: b.format ?? 'standard',
          events: b.events,
          enabled: b.enabled ?? true,
          sealed: sealSecret(opts.masterKey, id, secret),
          sinceSeq: seq,
          createdBy: actor,
        });
        await appendAudit(tx, {
          actor,
          action: 'webhook.create',
          outcome: 'accepted',
          payload: { webhookId: id, origin: urlOrigin(b.url), events: b.events, format: created.format },
        });
        return created;
      });
      req.auditedByService = true;
      reply.code(201);
      return { ...row, secret };
    },
  );

  app.get(
    '/admin/webhooks',
    {
      config: { auth: ['admin'] },
      schema: {
        operationId: 'listWebhooks',
        tags: TAGS,
        summary: 'List webhook endpoints',
        description:
          'Every endpoint (deleted ones with includeDeleted=true), oldest first, with how many of its deliveries are pending and failed (failed ones: POST …/redeliver). Secrets are never shown here.',
        querystring: ListQuery,
        response: { 200: EndpointList, ...errorResponses(400, 401, 403) },
      },
    },
    async (req) => ({
      items: await withDeliveryCounts(app.db.pool, await listEndpoints(app.db.pool, req.query.includeDeleted === true)),
    }),
  );

  app.get(
    '/admin/webhooks/:id',
    {
      config: { auth: ['admin'] },
      schema: {
        operationId: 'getWebhook',
        tags: TAGS,
        summary: 'Read a webhook endpoint',
        description:
          'One endpoint, deleted or not, with how many of its deliveries are pending and failed (its secret is never shown here).',
        params: EndpointParams,
        response: { 200: EndpointStatus, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const row = await getEndpoint(app.db.pool, req.params.id);
      if (!row) throw new NotFoundError('Webhook', req.params.id);
      return (await withDeliveryCounts(app.db.pool, [row]))[0]!;
    },
  );

  app.patch(
    '/admin/webhooks/:id',
    {
      config: ADMIN,
      schema: {
        operationId: 'updateWebhook',
        tags: TAGS,
        summary: 'Change a webhook endpoint',
        description:
          'Change its URL, event filter, format, description, or enable/disable it. Disabling cancels the deliveries still waiting; events that happen while it is disabled are not sent later. 409 WEBHOOK_DELETED for a deleted endpoint; URL and event refusals as on create.',
        params: EndpointParams,
        body: UpdateBody,
        response: {
          200: EndpointView,
          ...errorResponses(400, 401, 403, 404),
          409: errorResponse(409, ERROR_EXAMPLES.webhookDeleted),
          422: errorResponse(422, ERROR_EXAMPLES.webhookHostNotAllowed),
        },
      },
    },
    async (req) => {
      const b = req.body;
      if (b.url !== undefined) checkUrl(b.url);
      if (b.events !== undefined) checkEvents(b.events);
      const row = await change(req.params.id, req.principal!.name, async (tx, before) => {
        // Enabled again, it receives what happens from now on: the dispatcher reads the log behind
        // the events, and one that reached an event raised while the endpoint was disabled only
        // after it was enabled again sent it (a probe; workers down or deploying meanwhile).
        const reenabled = !before.enabled && b.enabled === true;
        const row = await updateEndpoint(tx, before.id, {
          ...b,
          ...(reenabled ? { sinceSeq: await headSeq(tx) } : {}),
        });
        if (before.enabled && !row.enabled) await cancelPending(tx, row.id, 'endpoint disabled');
        const changed = Object.keys(b).sort();
        const detail = { changed, events: row.events, format: row.format, enabled: row.enabled };
        return { row, action: 'webhook.update', detail };
      });
      req.auditedByService = true;
      return row;
    },
  );

  app.delete(
    '/admin/webhooks/:id',
    {
      config: ADMIN,
      schema: {
        operationId: 'deleteWebhook',
        tags: TAGS,
        summary: 'Delete a webhook endpoint',
        description:
          'It receives nothing more and deliveries still waiting are cancelled; the endpoint (deletedAt set) and its delivery log stay readable.',
        params: EndpointParams,
        response: {
          200: EndpointView,
          ...errorResponses(400, 401, 403, 404),
          409: errorResponse(409, ERROR_EXAMPLES.webhookDeleted),
        },
      },
    },
    async (req) => {
      const row = await change(req.params.id, req.principal!.name, async (tx, before) => {
        const row = await updateEndpoint(tx, before.id, { deleted: true });
        const cancelled = await cancelPending(tx, row.id, 'endpoint deleted');
        return { row, action: 'webhook.delete', detail: { cancelled } };
      });
      req.auditedByService = true;
      return row;
    },
  );

  app.post(
    '/admin/webhooks/:id/rotate-secret',
    {
      config: ADMIN,
      schema: {
        operationId: 'rotateWebhookSecret',
        tags: TAGS,
        summary: "Rotate a webhook endpoint's signing secret",
        description:
          'A new secret, shown this once; every delivery from now on (retries included) is signed with it, the old one stops at once.',
        params: EndpointParams,
        response: {
          200: EndpointWithSecret,
          ...errorResponses(400, 401, 403, 404),
          409: errorResponse(409, ERROR_EXAMPLES.webhookDeleted),
        },
      },
    },
    async (req) => {
      const secret = generateWebhookSecret();
      const row = await change(req.params.id, req.principal!.name, async (tx, before) => {
        const row = await updateEndpoint(tx, before.id, { sealed: sealSecret(opts.masterKey, before.id, secret) });
        return { row, action: 'webhook.rotate_secret', detail: {} };
      });
      req.auditedByService = true;
      return { ...row, secret };
    },
  );

  app.get(
    '/admin/webhooks/:id/deliveries',
    {
      config: { auth: ['admin'] },
      schema: {
        operationId: 'listWebhookDeliveries',
        tags: TAGS,
        summary: "Read a webhook endpoint's delivery log",
        description:
          'One entry per event for this endpoint: its attempts, last HTTP status and error, and when it was delivered or given up (status failed). Page with after = the last id you saw.',
        params: EndpointParams,
        querystring: DeliveriesQuery,
        response: { 200: DeliveryPage, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      if (!(await getEndpoint(app.db.pool, req.params.id))) throw new NotFoundError('Webhook', req.params.id);
      const limit = req.query.limit!;
      const { items, last } = splitPage(
        await listDeliveries(app.db.pool, req.params.id, { ...req.query, limit: readLimit(limit) }),
        limit,
      );
      const nextAfter = last ? Number(last.id) : null;
      // links.next, as every other list gives it (a trial followed the operations' lists' links here).
      const path = `/v1/admin/webhooks/${encodeURIComponent(req.params.id)}/deliveries`;
      return { items, nextAfter, links: { next: nextLink(path, req.query, 'after', nextAfter?.toString() ?? null) } };
    },
  );
  await redeliverRoute(app);
}
