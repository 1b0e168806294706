// POST /v1/restores: a restore is planned like a delete and runs as an operation (action restore),
// so it is followed, approved, started, paused, resumed and aborted through /v1/operations/{id}.
import { Type } from '@fastify/type-provider-typebox';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, type App } from '../../lib/schemas.ts';
import { DryRunView } from '../operations/schemas.ts';
import { operationReads } from '../operations/repository.ts';
import type { ScopeReport } from '../operations/scope.ts';
import { dryRunRejected, planRejected } from '../operations/submission.ts';
import { operationView } from '../operations/views.ts';
import { CreateRestoreBody } from './schemas.ts';
import { restoreService } from './service.ts';

export default async function restoreRoutes(app: App) {
  const reads = operationReads(app.db.pool);
  const service = restoreService({ pool: app.db.pool, reads, engine: app.engine, metrics: app.metrics, log: app.log });

  app.post(
    '/restores',
    {
      config: { auth: ['requester'], audited: true, inlineIds: true },
      schema: {
        operationId: 'createRestore',
        tags: ['restores'],
        summary: 'Restore what Blastgate deleted',
        description:
          'Exactly one scope: a tenant (everything of it Blastgate deleted and has not brought back, optionally since deletedSince), ' +
          'a delete operation that has ended (everything it deleted), or targetType + ids. More than one scope, or none: 422 ' +
          'SCOPE_CONFLICT / SCOPE_REQUIRED / SCOPE_INCOMPLETE naming the fields; an asOf in the future: 422 AS_OF_IN_FUTURE, a deletedSince in the future: 422 DELETED_SINCE_IN_FUTURE. Every resource is classified: ok, unknown, ' +
          'type_mismatch, duplicate, not_deleted, uncertain (a delete of it had an unknown outcome, then failed: deletedBy names it), purged, erased, no_snapshot, in_flight (naming the live operation that holds it), ' +
          "superseded (changed or re-created after the delete), adapter_changed (deleted through another system than its type's adapter reaches now: another kind or baseUrl; its restore would go there, as a rollback is refused ADAPTER_CHANGED) or parent_deleted (its parent is deleted and not restored with it). " +
          'One that is not ok rejects the restore (422 PLAN_REJECTED with a per-ID report, recorded). Otherwise 201: an operation ' +
          'of kind restore with its plan (items, tenants, waves ["10%", "100%"] and no bake by default). It needs an approval ' +
          '(policy restoreApproval, default required), runs through the same engine newest deletion first, restores each ' +
          "resource (with what its delete's cascade took) to its snapshot — the latest delete's, or the last one before asOf — " +
          'after verifying it, and ends completed only when every item came back (otherwise completed_with_failures listing ' +
          'what did not). A restore that halts waits for a human (resume or abort); it is never rolled back. ' +
          '`Idempotency-Key`: the same key with the same body returns the same restore; with another body 409.',
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
        body: CreateRestoreBody,
        response: {
          201: { ...Type.Ref('Operation'), description: 'Planned: the restore operation with its plan' },
          200: Type.Union([Type.Ref('Operation'), DryRunView], {
            description: 'Idempotent replay of a planned restore, or a dry-run plan',
            example: { dryRun: true, plan: { itemCount: 20 } },
          }),
          ...errorResponses(400, 401, 403, 404),
          409: errorResponse(409, ERROR_EXAMPLES.idempotencyKeyReused),
          422: errorResponse(422, ERROR_EXAMPLES.nothingToRestore),
        },
      },
    },
    async (req, reply) => {
      const result = await service.submit({
        body: req.body,
        idempotencyKey: req.headers['idempotency-key'] ?? null,
        principal: req.principal!,
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
            result.tokenScope,
            (req.body as { ids?: unknown }).ids !== undefined,
          );
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
    },
  );
}
