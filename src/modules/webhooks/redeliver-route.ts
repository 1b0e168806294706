// POST /v1/admin/webhooks/{id}/redeliver: a receiver down for longer than the retries last (two
// minutes by default then, an hour and a half now) had its deliveries recorded failed for good, and
// nothing sent them again (a new-user trial). An admin puts them back to pending with a fresh
// series of attempts; a worker's dispatcher queues them within a poll (dispatch.ts
// queueRedeliveries).
import { ConflictError, NotFoundError } from '../../lib/errors.ts';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, type App } from '../../lib/schemas.ts';
import { inTransaction } from '../../lib/sql.ts';
import { appendAudit } from '../audit/repository.ts';
import { getEndpoint, redeliver } from './repository.ts';
import { EndpointParams, RedeliverBody, RedeliverResult } from './schemas.ts';
import { urlOrigin } from './url-policy.ts';

export async function redeliverRoute(app: App) {
  app.post(
    '/admin/webhooks/:id/redeliver',
    {
      config: { auth: ['admin'] as const, audited: true },
      schema: {
        operationId: 'redeliverWebhookDeliveries',
        tags: ['admin'],
        summary: 'Send failed webhook deliveries again',
        description:
          "After a receiver was down longer than the retries last: the deliveries named (each failed or cancelled), or without deliveryIds the oldest 1,000 failed ones, go back to pending with a fresh series of BLASTGATE_WEBHOOK_ATTEMPTS attempts, the same event id (webhook-id) and body; a worker queues them within a poll. `attempts` keeps counting every POST. 409 WEBHOOK_DISABLED (enable it first), WEBHOOK_DELETED, or DELIVERIES_NOT_REDELIVERABLE naming each delivery that is not this endpoint's or is pending or delivered (nothing is changed).",
        params: EndpointParams,
        body: RedeliverBody,
        response: {
          200: RedeliverResult,
          ...errorResponses(400, 401, 403, 404),
          409: errorResponse(409, ERROR_EXAMPLES.deliveriesNotRedeliverable),
        },
      },
    },
    async (req) => {
      const { id } = req.params;
      const actor = req.principal!.name;
      const result = await inTransaction(app.db.pool, async (tx) => {
        const endpoint = await getEndpoint(tx, id, true);
        if (!endpoint) throw new NotFoundError('Webhook', id);
        if (endpoint.deletedAt)
          throw new ConflictError('WEBHOOK_DELETED', `webhook ${id} was deleted`, { webhook: id });
        if (!endpoint.enabled)
          throw new ConflictError(
            'WEBHOOK_DISABLED',
            `webhook ${id} is disabled: enable it (PATCH enabled: true) before redelivering to it`,
            { webhook: id },
          );
        const r = await redeliver(tx, id, req.body.deliveryIds ?? null);
        if ('refused' in r) {
          const { unknown, notEnded } = r.refused;
          const named = [
            ...notEnded.map((d) => `${d.id} (${d.status})`),
            ...unknown.map((u) => `${u} (not a delivery of this endpoint)`),
          ];
          throw new ConflictError(
            'DELIVERIES_NOT_REDELIVERABLE',
            `deliveries ${named.join(', ')} cannot be redelivered: only failed or cancelled ones can; nothing was changed`,
            { unknown, notEnded },
          );
        }
        await appendAudit(tx, {
          actor,
          action: 'webhook.redeliver',
          outcome: 'accepted',
          payload: {
            webhookId: id,
            origin: urlOrigin(endpoint.url),
            reason: req.body.reason,
            deliveryIds: r.ids,
            more: r.more,
          },
        });
        return r;
      });
      req.auditedByService = true;
      return { redelivered: result.ids.length, deliveryIds: result.ids, more: result.more };
    },
  );
}
