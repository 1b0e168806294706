// POST /v1/purges: a purge is planned like a delete and runs as an operation (action purge, mode
// hard), so it is followed, approved, started, paused, resumed and aborted through /v1/operations/{id}.
import { Type } from '@fastify/type-provider-typebox';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, type App } from '../../lib/schemas.ts';
import { operationReads } from '../operations/repository.ts';
import { DryRunView } from '../operations/schemas.ts';
import { dryRunRejected, planRejected } from '../operations/submission.ts';
import { operationView } from '../operations/views.ts';
import { CreatePurgeBody } from './schemas.ts';
import { purgeService } from './service.ts';

export default async function purgeRoutes(app: App) {
  const reads = operationReads(app.db.pool);
  const service = purgeService({ pool: app.db.pool, reads, metrics: app.metrics, log: app.log });

  app.post(
    '/purges',
    {
      config: { auth: ['requester'], audited: true, inlineIds: true },
      schema: {
        operationId: 'createPurge',
        tags: ['purges'],
        summary: 'Hard-delete what is past its retention',
        description:
          'Exactly one scope: a tenant (everything of it Blastgate deleted and is still deleted, optionally since deletedSince), ' +
          'a delete operation that has ended, targetType + ids, or dueBefore (every resource whose purgeAfter is at or before it; a dueBefore more than a minute ahead of the server is 422 DUE_BEFORE_IN_FUTURE, and so is a deletedSince: DELETED_SINCE_IN_FUTURE). ' +
          'More than one scope, or none: 422 SCOPE_CONFLICT / SCOPE_REQUIRED / SCOPE_INCOMPLETE naming the fields. Every resource is ' +
          'classified: ok, unknown, type_mismatch, duplicate, not_deleted (still active), within_retention (its purgeAfter, named, is ' +
          'still ahead), purged (already), in_flight (naming the live operation that holds it) restore_uncertain (a restore of it ' +
          "since its delete, or a rollback of that delete, went out and did not end restored: it may be live again) or adapter_changed (deleted through another system than its type's adapter reaches now: another kind or baseUrl), or, for a parent, moved (its cascade would take a resource an import moved to another tenant or type since its delete, named in via), child_not_listed (a soft-deleted child, named in via, whose retention has ended too but which is not in the purge: deleted on its own, not by the parent's delete; purge it first) or child_later (a child it purges is of a tenant a later wave takes: a parent never goes before its children; a tenant, an operation or dueBefore keep such a parent, leftOut.childrenKept). In a list of " +
          'IDs, one that is not ok rejects the purge (422 PLAN_REJECTED with a per-ID report, recorded); a tenant, an operation or ' +
          'dueBefore leaves the restore_uncertain and adapter_changed ones out (plan.leftOut.restoreUncertain, adapterChanged), and what an import moved to another tenant or type since its delete (plan.leftOut.moved), and purges the rest. Nothing left to purge is 422 NOTHING_TO_PURGE: ' +
          'nothing in the scope is deleted and not purged yet, or all of it was left out (the message counts them by reason; details.leftOut has the counts and the first IDs). ' +
          'Otherwise 201: an operation of kind purge, mode hard, with its plan ' +
          "(the delete's default waves). It always needs an approval by someone other than the requester (and break-glass over budget), " +
          "whatever the policy; once started, each item is hard-deleted through its type's adapter and ends purged. A purge is never " +
          'rolled back (409 ROLLBACK_NOT_SUPPORTED): one that halts waits for a human (resume or abort). It ends completed only when ' +
          'every item was purged, otherwise completed_with_failures listing what was not. Snapshots stay; a later restore reports ' +
          '`purged`. `Idempotency-Key`: the same key with the same body returns the same purge; with another body 409.',
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
        body: CreatePurgeBody,
        response: {
          201: {
            ...Type.Ref('Operation'),
            description: 'Planned: the purge operation with its plan, waiting for approval',
          },
          200: Type.Union([Type.Ref('Operation'), DryRunView], {
            description: 'Idempotent replay of a planned purge, or a dry-run plan',
            example: { dryRun: true, plan: { itemCount: 20 } },
          }),
          ...errorResponses(400, 401, 403, 404),
          409: errorResponse(409, ERROR_EXAMPLES.idempotencyKeyReused),
          422: errorResponse(422, ERROR_EXAMPLES.nothingToPurge),
        },
      },
    },
    async (req, reply) => {
      const result = await service.submit({
        body: req.body,
        idempotencyKey: req.headers['idempotency-key'] ?? null,
        principal: { tokenId: req.principal!.tokenId, name: req.principal!.name },
      });
      switch (result.kind) {
        case 'planned':
          if (result.replayed) reply.header('idempotent-replayed', 'true');
          return reply
            .status(result.replayed ? 200 : 201)
            .send(operationView(await reads.withApprovals(result.operation)));
        case 'dry_run':
          return reply.status(200).send({ dryRun: true, plan: result.plan });
        case 'dry_run_rejected':
          throw dryRunRejected(
            result.classification.counts,
            result.classification.samples,
            null,
            (req.body as { ids?: unknown }).ids !== undefined,
          );
        case 'rejected': {
          req.auditedByService = true;
          if (result.replayed) reply.header('idempotent-replayed', 'true');
          const r = result.operation.rejection as { counts: Record<string, number>; offenders: unknown };
          throw planRejected(r.counts, r.offenders, result.operation.id, null);
        }
      }
    },
  );
}
