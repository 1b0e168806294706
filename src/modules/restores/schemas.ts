// POST /v1/restores: what a restore asks for, and the policies it runs with. A restore is an
// operation (action "restore"), so everything after the request is the Operation schema.
import { Type, type Static, type TObject } from '@fastify/type-provider-typebox';
import { IdString, MultilineText, Text } from '../../lib/schemas.ts';
import { MAX_INLINE_IDS } from '../operations/intake.ts';
import {
  HaltPolicy,
  RolloutPolicy,
  type HaltPolicy as Halt,
  type RolloutPolicy as Rollout,
} from '../operations/policy.ts';

/** Every way a resource of a restore can be classified; any but `ok` rejects the restore. */
export const RESTORE_CLASSES = [
  'ok',
  'unknown',
  'type_mismatch',
  'duplicate',
  'not_deleted',
  'uncertain',
  'purged',
  'erased',
  'no_snapshot',
  'in_flight',
  'superseded',
  'adapter_changed',
  'parent_deleted',
  'out_of_scope',
] as const;
export type RestoreClass = (typeof RESTORE_CLASSES)[number];

/** The fields that name a scope; exactly one scope per restore. */
export const SCOPE_FIELDS = {
  tenant: ['tenantId', 'deletedSince'],
  operation: ['operationId'],
  ids: ['targetType', 'ids'],
} as const;

/**
 * Defaults of a restore: two waves (a tenth of the tenants, then the rest), no bake: a restore is
 * urgent, and its first wave still shows whether restores work before the rest are sent.
 */
// A restore drill checks that a delete can be undone; a restore has nothing of the kind to check.
export const RESTORE_ROLLOUT: Partial<Rollout> = { waves: ['10%', '100%'], bakeSeconds: 0, restoreDrill: false };
/**
 * A restore halts to wait for a human (it is never rolled back); a type without a health probe
 * does not hold a restore up (probe optional), though a probe that answers unhealthy still halts it.
 */
export const RESTORE_HALT: Partial<Halt> = { onHalt: 'pause', probe: 'optional' };

const Timestamp = (description: string) => Type.String({ format: 'date-time', description });

/**
 * The policy fields without their `default`s: the validator fills in defaults, and a delete's
 * (five waves, a 300 s bake, probes required) would override a restore's for every field omitted.
 */
export function withoutDefaults<T extends TObject>(schema: T, description: string) {
  const properties = Object.fromEntries(
    Object.entries(schema.properties).map(([k, v]) => {
      const copy: Record<string, unknown> = { ...v };
      delete copy.default;
      return [k, copy];
    }),
  ) as T['properties'];
  return Type.Partial(Type.Object(properties), { additionalProperties: false, description });
}

export const CreateRestoreBody = Type.Object(
  {
    tenantId: Type.Optional(
      IdString({
        description:
          'Scope: everything of this tenant that Blastgate deleted (across operations) and that is still deleted',
      }),
    ),
    deletedSince: Type.Optional(Timestamp('With tenantId: only what was deleted at or after this time')),
    operationId: Type.Optional(
      IdString({
        maxLength: 100,
        description:
          'Scope: everything this delete operation deleted that is still deleted (the operation must have ended: completed, completed_with_failures or rollback_incomplete)',
      }),
    ),
    targetType: Type.Optional(
      Type.String({
        pattern: '^[a-z][a-z0-9_]{0,39}$',
        description: 'Scope, with ids: the type every ID must be (an ID of another type is type_mismatch)',
      }),
    ),
    ids: Type.Optional(
      Type.Array(IdString(), {
        minItems: 1,
        maxItems: MAX_INLINE_IDS,
        description: `Scope, with targetType: these resources (up to ${MAX_INLINE_IDS})`,
      }),
    ),
    asOf: Type.Optional(
      Timestamp(
        'Point in time: each resource goes back to its last snapshot taken before this time (default: the one taken before its latest delete)',
      ),
    ),
    reason: MultilineText({ minLength: 3, maxLength: 2000, description: 'Why this is being restored' }),
    ticket: Text({ minLength: 1, maxLength: 200, description: 'Incident or change ticket' }),
    rollout: Type.Optional(
      withoutDefaults(
        Type.Omit(RolloutPolicy, ['restoreDrill']),
        'Rollout policy; omitted fields take the restore defaults: waves ["10%", "100%"], bakeSeconds 0, the rest as for a delete',
      ),
    ),
    haltPolicy: Type.Optional(
      withoutDefaults(
        Type.Omit(HaltPolicy, ['onHalt']),
        'Halt policy without onHalt: a restore that halts waits for a human (resume or abort); it is never rolled back. Defaults as for a delete, except probe: optional',
      ),
    ),
    dryRun: Type.Optional(
      Type.Boolean({ default: false, description: 'Return the plan without creating the restore' }),
    ),
    autoStart: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          'Start as soon as the required approvals are in (at once when the policy requires none). While a global freeze is in effect such a restore is 409 FROZEN and nothing is planned',
      }),
    ),
  },
  {
    additionalProperties: false,
    $id: 'CreateRestore',
    description:
      'A restore: exactly one scope (tenantId [+ deletedSince], operationId, or targetType + ids), optionally to a point in time (asOf)',
    // The example tenant of the registry examples: a dry run either way.
    example: {
      tenantId: 'tn_example',
      deletedSince: '2026-11-24T10:00:00.000Z',
      reason: 'Sites deleted by the legacy-app cleanup script',
      ticket: 'INC-883',
      dryRun: true,
    },
  },
);
export type CreateRestoreBody = Static<typeof CreateRestoreBody>;

/** The scope as stored with the operation and shown by GET /v1/operations/{id}. */
export type RestoreScope = (
  | { kind: 'tenant'; tenantId: string; deletedSince: string | null }
  | { kind: 'operation'; operationId: string }
  | { kind: 'ids'; targetType: string; ids: number }
) & { asOf: string | null };

export const RestoreScopeView = Type.Object(
  {
    kind: Type.Union([Type.Literal('tenant'), Type.Literal('operation'), Type.Literal('ids'), Type.Literal('due')]),
    dueBefore: Type.Optional(Type.String({ format: 'date-time', description: 'Purges: everything due by then' })),
    tenantId: Type.Optional(Type.String()),
    deletedSince: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
    operationId: Type.Optional(Type.String()),
    targetType: Type.Optional(Type.String()),
    ids: Type.Optional(Type.Integer({ description: 'How many IDs were submitted (the items route lists them)' })),
    asOf: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { description: 'Restores and purges: the scope that was asked for' },
);
