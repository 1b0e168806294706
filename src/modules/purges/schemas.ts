// POST /v1/purges: what a purge asks for. A purge is an operation (action "purge", mode "hard"),
// so everything after the request is the Operation schema.
import { Type, type Static } from '@fastify/type-provider-typebox';
import { IdString, MultilineText, Text } from '../../lib/schemas.ts';
import { MAX_INLINE_IDS } from '../operations/intake.ts';
import { HaltPolicy, RolloutPolicy, type HaltPolicy as Halt } from '../operations/policy.ts';
import { CreateRestoreBody, withoutDefaults, type RestoreScope } from '../restores/schemas.ts';

/** Every way a resource of a purge can be classified; any but `ok` rejects the purge. */
export const PURGE_CLASSES = [
  'ok',
  'unknown',
  'type_mismatch',
  'duplicate',
  'not_deleted',
  'within_retention',
  'purged',
  'in_flight',
  'restore_uncertain',
  'adapter_changed',
  'child_later',
  'child_not_listed',
  'moved',
] as const;
export type PurgeClass = (typeof PURGE_CLASSES)[number];

/**
 * A purge halts to wait for a human: it is never rolled back (nothing can be restored after a hard
 * delete). Probes are optional: what it hard-deletes is already deleted for the tenant.
 */
export const PURGE_HALT: Partial<Halt> = { onHalt: 'pause', probe: 'optional' };

export type PurgeScope = RestoreScope | { kind: 'due'; dueBefore: string; asOf: null };

const { deletedSince, targetType } = CreateRestoreBody.properties;

export const CreatePurgeBody = Type.Object(
  {
    tenantId: Type.Optional(
      IdString({
        description: 'Scope: everything of this tenant that Blastgate deleted (across operations) and is still deleted',
      }),
    ),
    deletedSince,
    operationId: Type.Optional(
      IdString({
        maxLength: 100,
        description:
          'Scope: everything this delete operation deleted that is still deleted (the operation must have ended)',
      }),
    ),
    targetType,
    ids: Type.Optional(
      Type.Array(IdString(), {
        minItems: 1,
        maxItems: MAX_INLINE_IDS,
        description: `Scope, with targetType: these resources (up to ${MAX_INLINE_IDS})`,
      }),
    ),
    dueBefore: Type.Optional(
      Type.String({
        format: 'date-time',
        description:
          'Scope: every resource whose retention ends (purgeAfter) at or before this time and that is not purged yet',
      }),
    ),
    reason: MultilineText({ minLength: 3, maxLength: 2000, description: 'Why this is being purged' }),
    ticket: Text({ minLength: 1, maxLength: 200, description: 'Change ticket' }),
    rollout: Type.Optional(
      withoutDefaults(
        RolloutPolicy,
        'Rollout policy; omitted fields take the delete defaults (five waves, 300 s bake)',
      ),
    ),
    haltPolicy: Type.Optional(
      withoutDefaults(
        Type.Omit(HaltPolicy, ['onHalt']),
        'Halt policy without onHalt: a purge that halts waits for a human (resume or abort); it is never rolled back. Defaults as for a delete, except probe: optional',
      ),
    ),
    dryRun: Type.Optional(Type.Boolean({ default: false, description: 'Return the plan without creating the purge' })),
  },
  {
    additionalProperties: false,
    $id: 'CreatePurge',
    description:
      'A purge: exactly one scope (tenantId [+ deletedSince], operationId, targetType + ids, or dueBefore) of soft-deleted resources past their retention',
    // A dry run: executing the example from Swagger UI shows what is due and creates nothing.
    example: { dueBefore: '2026-11-29T00:00:00.000Z', reason: 'Retention ended', ticket: 'CHG-2211', dryRun: true },
  },
);
export type CreatePurgeBody = Static<typeof CreatePurgeBody>;
