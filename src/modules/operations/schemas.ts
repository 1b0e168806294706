// Operation request and response schemas (one per concept, with descriptions and examples).
import { Type, type Static } from '@fastify/type-provider-typebox';
import { IdString, MultilineText, PageLinks, Text } from '../../lib/schemas.ts';
import { RollingUsage } from './budget-schemas.ts';
import { Progress } from './progress.ts';
import { HaltPolicy, RolloutPolicy } from './policy.ts';
import { MAX_INLINE_IDS } from './intake.ts';
import { EstimatedRestoreSchema } from './restore-estimate.ts';
import { RestoreScopeView } from '../restores/schemas.ts';

/** An operation view's targetType: a restore or purge by tenant or operation may span several types. */
export const TargetTypeView = Type.String({
  description:
    'The type of the resources acted on. A restore or purge scoped by tenant or operation may cover several types: ' +
    'then it is the type with the most items, and plan.estimatedRestore.byType lists every type with its count',
});

const specFields = {
  action: Type.Literal('delete', {
    description: 'What to do to every ID. Only delete for now: restores and purges are not operations of this API yet',
    default: 'delete',
  }),
  targetType: Type.String({
    pattern: '^[a-z][a-z0-9_]{0,39}$',
    description: 'The resource type every ID must be. An ID of another type rejects the whole operation',
  }),
  // No schema default: an erasure with mode "soft" is refused (MODE_CONFLICT), so the service
  // must see whether mode was given.
  mode: Type.Optional(
    Type.Union([Type.Literal('soft'), Type.Literal('hard')], {
      description:
        'soft: mark for deletion, restorable during retention (the default and the only mode a delete takes). ' +
        '"hard" is refused with 422 HARD_MODE_REPLACED: a permanent delete is a compliance erasure (erasure: true; ' +
        '"hard" beside it only repeats it); ' +
        '"soft" with erasure: true is refused with 422 MODE_CONFLICT',
    }),
  ),
  erasure: Type.Optional(
    Type.Boolean({
      default: false,
      description:
        'Compliance erasure: hard-delete every ID (and what its cascade takes) even within retention, and destroy the ' +
        "per-resource keys of their snapshots so they can never be read again. Never rolled back. Needs an admin's " +
        'approval and a second approver (two people, neither the requester)',
    }),
  ),
  reason: MultilineText({ minLength: 3, maxLength: 2000, description: 'Why this is being deleted' }),
  ticket: Text({ minLength: 1, maxLength: 200, description: 'Change ticket or incident reference' }),
  rollout: Type.Optional(
    Type.Partial(RolloutPolicy, {
      additionalProperties: false,
      description: 'Rollout policy; omitted fields take defaults',
    }),
  ),
  haltPolicy: Type.Optional(
    Type.Partial(HaltPolicy, { additionalProperties: false, description: 'Halt policy; omitted fields take defaults' }),
  ),
  dryRun: Type.Optional(Type.Boolean({ default: false, description: 'Return the plan without creating an operation' })),
  autoStart: Type.Optional(
    Type.Boolean({ default: false, description: 'Start as soon as the required approvals are in' }),
  ),
};

// A dry run: executing the example from Swagger UI shows a plan and creates nothing. Its type and
// IDs are those the registry examples declare and import (registry/schemas.ts), so an operator who
// executes the examples in the order of the document sees a plan, not UNKNOWN_TARGET_TYPE.
export const EXAMPLE_SPEC = {
  action: 'delete',
  targetType: 'example_app',
  mode: 'soft',
  reason: 'Remove legacy Jira Insight app',
  ticket: 'CHG-2042',
  dryRun: true,
};

/** The IDs of the submission examples (JSON, NDJSON and text). */
export const EXAMPLE_IDS = ['example_app_9f2c1', 'example_app_9f2c2'] as const;

export const OperationSpec = Type.Object(specFields, {
  additionalProperties: false,
  $id: 'OperationSpec',
  description: 'An operation without its IDs: the first line of an NDJSON upload',
  example: EXAMPLE_SPEC,
});
export type OperationSpec = Static<typeof OperationSpec>;

export const CreateOperationBody = Type.Object(
  {
    ...specFields,
    ids: Type.Array(IdString(), {
      minItems: 1,
      maxItems: MAX_INLINE_IDS,
      description: `IDs to act on (up to ${MAX_INLINE_IDS}; larger lists as NDJSON or text upload)`,
    }),
  },
  {
    additionalProperties: false,
    $id: 'CreateOperation',
    description: 'A destructive operation with its IDs inline',
    example: { ...EXAMPLE_SPEC, ids: [...EXAMPLE_IDS] },
  },
);
export type CreateOperationBody = Static<typeof CreateOperationBody>;

/**
 * POST /v1/operations/text: the body is one ID per line, so the spec comes in the query string.
 * No defaults here (the spec's own defaults apply when it is checked as an OperationSpec).
 */
export const TextUploadQuery = Type.Object(
  {
    // With examples, as the JSON body has: Swagger UI fills them in, so "Execute" sends a dry run.
    targetType: Type.String({ ...specFields.targetType, example: EXAMPLE_SPEC.targetType }),
    reason: Type.String({ ...specFields.reason, example: EXAMPLE_SPEC.reason }),
    ticket: Type.String({ ...specFields.ticket, example: EXAMPLE_SPEC.ticket }),
    action: Type.Optional(Type.Literal('delete', { description: 'Only "delete" (the default)' })),
    mode: Type.Optional(
      Type.Union([Type.Literal('soft'), Type.Literal('hard')], {
        description: 'soft (the default); "hard" is refused (HARD_MODE_REPLACED) unless erasure=true: use erasure=true',
      }),
    ),
    erasure: Type.Optional(
      Type.Boolean({ description: 'Compliance erasure (see OperationSpec.erasure); needs admin + second approver' }),
    ),
    dryRun: Type.Optional(
      Type.Boolean({ description: 'Return the plan without creating an operation', example: true }),
    ),
    autoStart: Type.Optional(Type.Boolean({ description: 'Start as soon as approved' })),
    // The rollout fields an operator sets most, flat (a query string has no objects); a JSON or
    // NDJSON submission sets every rollout and halt field.
    waves: Type.Optional(
      Type.String({
        // Each step is checked on its own (submission.ts textSpec), so that a bad one is named
        // (querystring.waves.1) with why, not answered with the whole list's pattern (a trial).
        // Printable ASCII: what characters it takes; which steps it takes is said per step.
        pattern: '^[ -~]+$',
        maxLength: 400,
        description:
          'rollout.waves, comma-separated: "1,10%,100%" (each % written %25 in a URL: 1,10%25,100%25). Up to 20 steps',
        example: '1,10%,100%',
      }),
    ),
    bakeSeconds: Type.Optional(RolloutPolicy.properties.bakeSeconds),
    concurrency: Type.Optional(RolloutPolicy.properties.concurrency),
    onHalt: Type.Optional(HaltPolicy.properties.onHalt),
  },
  { additionalProperties: false, description: 'The operation spec of a text/plain upload' },
);
export type TextUploadQuery = Static<typeof TextUploadQuery>;

/** States of an item in the ledger (operation_items.state). */
export const ITEM_STATES = ['pending', 'claimed', 'done', 'failed', 'restoring', 'restored', 'restore_failed'] as const;

const WaveSchema = Type.Object(
  {
    index: Type.Integer(),
    kind: Type.Union([Type.Literal('internal'), Type.Literal('canary')]),
    step: Type.Union([Type.String(), Type.Null()]),
    tenants: Type.Integer({
      description:
        "Tenants whose resources the wave deletes: its submitted items' tenants and every tenant their cascades reach",
    }),
    items: Type.Integer({ description: 'What the wave deletes: its submitted items and what their cascades take' }),
    descendants: Type.Integer({
      description: 'Of items, the descendants cascades take with their parent (0 without a cascade)',
    }),
    cumulativeTenants: Type.Integer({
      description: 'External tenants touched by the end of this wave, those reached by cascades included',
    }),
    fromSeq: Type.Integer({ description: 'First ledger seq of the wave (its submitted items)' }),
    toSeq: Type.Integer({
      description: 'One past the last ledger seq of the wave; descendants follow every wave, after their parent',
    }),
  },
  { description: 'One wave of the rollout' },
);

export const PlanSchema = Type.Object(
  {
    itemCount: Type.Integer(),
    tenantCount: Type.Integer(),
    tenants: Type.Object({
      total: Type.Integer(),
      internal: Type.Integer(),
      protected: Type.Integer(),
      top: Type.Array(
        Type.Object({
          tenantId: Type.String(),
          items: Type.Integer({
            description: 'What the tenant loses: its submitted items and its resources cascades take',
          }),
          internal: Type.Boolean(),
          wave: Type.Integer({ description: 'The first wave that deletes any of its resources' }),
        }),
        {
          description:
            'The tenants that lose the most, most first (up to 20); their items add up to itemCount when all are listed',
        },
      ),
    }),
    cascade: Type.Array(Type.Object({ type: Type.String(), count: Type.Integer() }), {
      description:
        'Active descendants the delete takes with it, by type; they are items of the plan (itemCount, tenantCount, budgets, waves)',
    }),
    cascadeLeftOut: Type.Optional(
      Type.Array(
        Type.Object({
          type: Type.String(),
          count: Type.Integer(),
          ids: Type.Array(Type.String(), { description: 'The first 10, by ID' }),
        }),
        {
          description:
            'Descendants of cascade types under what the plan takes that it leaves out because they are already ' +
            'deleted (soft-deleted or purged in the registry, or deleted over HTTP by an earlier operation whose delete ' +
            'stands), by type. Not items of the plan. Absent when there are none.',
          examples: [[{ type: 'app', count: 2, ids: ['app_00001_01', 'app_00001_02'] }]],
        },
      ),
    ),
    waves: Type.Array(WaveSchema),
    budgets: Type.Object({
      maxTenants: Type.Integer(),
      maxItems: Type.Integer(),
      // Optional, like estimatedRestore below: plans stored before they existed do not have them.
      maxRestoreMinutes: Type.Optional(Type.Integer()),
      withinBudget: Type.Boolean(),
      breaches: Type.Array(Type.String(), { description: 'Every budget the plan breaches, per operation or rolling' }),
      rolling: Type.Optional(RollingUsage),
    }),
    estimatedRestore: Type.Optional(EstimatedRestoreSchema),
    liveAtAsOf: Type.Optional(
      Type.Object(
        {
          count: Type.Integer({ description: 'How many resources were live at asOf' }),
          ids: Type.Array(Type.String(), { description: 'The first 20 of them by ID' }),
        },
        {
          description:
            'Restores asOf a time: resources that were live then (brought back after the delete before asOf, and ' +
            'deleted again since). No snapshot holds their state at asOf: they go back to their state when they were ' +
            'brought back, without edits made between then and asOf. Absent when there are none',
        },
      ),
    ),
    leftOut: Type.Optional(
      Type.Object(
        {
          purged: Type.Integer({
            description: 'How many resources of the scope are purged (by a purge or an erasure; erased ones included)',
          }),
          ids: Type.Array(Type.String(), { description: 'The first 20 purged ones by ID' }),
          erased: Type.Integer({ description: 'Of the purged, how many a compliance erasure erased' }),
          restored: Type.Integer({
            description: 'An operation scope: how many were brought back since, by another restore or a rollback',
          }),
          deletedAgain: Type.Integer({
            description:
              'An operation scope: how many were brought back since and deleted again by another operation (a restore of that one takes them)',
          }),
          uncertain: Type.Integer({
            description:
              "How many the scope's deletes may or may not have deleted: a try of unknown outcome (a timeout, a 5xx), then the item failed. " +
              'A restore takes only what is known to be deleted; a rollback of that delete restores them from their snapshots',
          }),
          activeAgain: Type.Optional(
            Type.Integer({
              description:
                'How many are active again since their delete, brought back outside Blastgate (their system restored ' +
                'them; an import said they are active): not deleted any more, so neither restored nor purged',
            }),
          ),
          childrenKept: Type.Optional(
            Type.Integer({
              description:
                'A purge of everything due, a tenant or an operation: how many due resources it keeps because a child ' +
                'their hard delete would take or orphan is not purged with them (within its retention, or live). ' +
                'Absent when none',
            }),
          ),
          restoreUncertain: Type.Optional(
            Type.Integer({
              description:
                'A purge of everything due, a tenant or an operation: how many resources it leaves out because a restore of ' +
                'them (or a rollback of their delete) went out since the delete with its outcome unknown: they may be live ' +
                'again. A list of IDs refuses them instead (restore_uncertain). Absent when none',
            }),
          ),
          moved: Type.Optional(
            Type.Integer({
              description:
                "A tenant's or an operation's restore or purge: how many resources its deletes took that an import has moved " +
                "to another tenant or type since (each item names the tenant it belongs to now): not this scope's to restore " +
                'or purge. A list of IDs still names each one (a restore refuses it: superseded). Absent when none',
            }),
          ),
          adapterChanged: Type.Optional(
            Type.Integer({
              description:
                "A purge of everything due, a tenant or an operation: how many resources it leaves out because their type's adapter " +
                'reaches another system (kind or baseUrl) than their delete went through: the hard delete would go there. A list of ' +
                'IDs refuses them instead (adapter_changed). Absent when none',
            }),
          ),
          otherTenant: Type.Optional(
            Type.Integer({
              description:
                "A tenant's restore: how many resources of other tenants its deletes took along (a cascade from a parent of this tenant) " +
                "are still deleted and left to their own tenant's restore (each item names its parent and tenant). Absent when none",
            }),
          ),
          items: Type.Array(
            Type.Object({
              id: Type.String(),
              reason: Type.Union([
                Type.Literal('purged'),
                Type.Literal('erased'),
                Type.Literal('restored'),
                Type.Literal('deleted_again'),
                Type.Literal('uncertain'),
                Type.Literal('active_again'),
                Type.Literal('moved'),
                Type.Literal('children_kept'),
                Type.Literal('other_tenant'),
                Type.Literal('restore_uncertain'),
                Type.Literal('adapter_changed'),
              ]),
              by: Type.Union([Type.String(), Type.Null()], {
                description:
                  'The operation that did it: the purge or erasure, the restore or the delete whose rollback brought it back, the delete that took it again or may have (uncertain; null when only an import said it is purged)',
              }),
              parentId: Type.Optional(
                Type.String({ description: 'other_tenant: the parent (of this tenant) whose delete took it along' }),
              ),
              tenantId: Type.Optional(
                Type.String({
                  description:
                    'other_tenant: its own tenant, whose restore brings it back; moved: the tenant it belongs to now',
                }),
              ),
              detail: Type.String({ description: 'Why it is left out, for people' }),
            }),
            { description: 'The first 20 of each reason, by ID' },
          ),
        },
        {
          description:
            'Restores and purges of a tenant or an operation: what the scope names but the plan leaves out, and why: ' +
            'purged already (by a purge or an erasure; for a tenant, also what an erasure took while it was active), ' +
            'which is final; for an operation, also what was brought back since (restored) or deleted again since by ' +
            'another operation (deleted_again); for a tenant, what its deletes took along of other tenants (other_tenant); for both, what a delete may or may not have deleted (uncertain), what was brought back outside Blastgate since (active_again) and what an import moved to another tenant or type since (moved). Absent when nothing was left out. A list of IDs is never cut short: a purged ID in it ' +
            'rejects the plan (purged, erased)',
        },
      ),
    ),
    requiresBreakGlass: Type.Boolean(),
    breakGlassReasons: Type.Array(Type.String()),
    planHash: Type.String({ description: 'Approvals must carry this hash' }),
  },
  { $id: 'Plan', description: 'The blast radius: items, tenants, cascade, waves, budgets and the time to restore' },
);

/** Why a live operation does not move now (operations/waiting.ts), in the view and the list. */
export const Waiting = Type.Union(
  [
    Type.Object({
      on: Type.Union(
        [
          Type.Literal('redis'),
          Type.Literal('workers'),
          Type.Literal('claims'),
          Type.Literal('restore_retry'),
          Type.Literal('progress'),
          Type.Literal('bake_end'),
        ],
        {
          description:
            'What it waits for: the work queue (Redis), unreachable from the API or not answering it (its connection open: a frozen host, a partition); a worker process, none being connected to the queue; items another run holds, a rollback waiting until a delete chunk records them or the claim lease of a worker that stopped ends, or a running delete whose chunk a worker that stopped had claimed, waiting until the job of that chunk runs again (items, until say more); the retry of restores that failed for a reason that may pass (a 5xx, a timeout), a rollback waiting out their backoff (items, nextRetryAt, lastError say more); or item outcomes, none recorded for 30 s while running or rolling back (detail says what holds items that long); or the step after a bake, none taken 15 s after it ended (bake_end)',
        },
      ),
      since: Type.String({
        format: 'date-time',
        description:
          'Since when the API has lost its connection (redis), first saw no worker (workers), the first of the held items was claimed (claims), the last restore failed (restore_retry), the last item outcome (progress), or the bake ended (bake_end)',
      }),
      detail: Type.String({ description: 'For people' }),
      items: Type.Optional(
        Type.Integer({
          description:
            'restore_retry: how many items (cascaded descendants included) wait for the retry of their restore; claims: how many items other runs hold',
        }),
      ),
      until: Type.Optional(
        Type.String({
          format: 'date-time',
          description:
            "claims: when the first of those claims ends (its lease): the rollback takes over what is still unrecorded then, and a running delete at the latest then (its chunk job runs again once the stopped worker's job lock lapses, usually sooner)",
        }),
      ),
      nextRetryAt: Type.Optional(
        Type.String({
          format: 'date-time',
          description: 'restore_retry: when the next of those retries is due (the rollback moves again then)',
        }),
      ),
      lastError: Type.Optional(
        Type.Union([Type.String(), Type.Null()], {
          description:
            'restore_retry: the last error a restore met (at most 500 characters); the items route (?state=restoring) lists each item with its own',
        }),
      ),
    }),
    Type.Null(),
  ],
  {
    description:
      'A running, baking or rolling-back operation that cannot move because the work queue (Redis) is unreachable from the API or no worker process is connected to it, a rollback waiting for the retry of failed restores (until the next is due), or one that has recorded no item outcome for 30 s: which, and since when (why it does not move). Null otherwise',
    example: {
      on: 'redis',
      since: '2026-12-01T16:20:00.000Z',
      detail:
        "The work queue (Redis) cannot be reached: chunks already in a worker's hands go on, but no new work is picked up until it is back. Nothing is lost; queued work is re-derived from the ledger when it returns.",
    },
  },
);

export const OperationView = Type.Object(
  {
    id: Type.String(),
    kind: Type.Union([Type.Literal('delete'), Type.Literal('restore'), Type.Literal('erase'), Type.Literal('purge')], {
      description:
        'delete (POST /v1/operations), erase (POST /v1/operations with erasure: true: a compliance erasure), restore (POST /v1/restores) or purge (POST /v1/purges)',
    }),
    action: Type.String({ description: 'Same as kind (kept for clients written before restores)' }),
    scope: Type.Union([RestoreScopeView, Type.Null()], {
      description: 'Restores: the scope asked for; null for a delete',
    }),
    targetType: TargetTypeView,
    mode: Type.String(),
    reason: Type.String(),
    ticket: Type.String(),
    state: Type.String({
      description:
        'planned, rejected, approved, running, baking, paused, halted, rolling_back, rolled_back, rollback_incomplete, ' +
        'completed, completed_with_failures, cancelled, failed, expired. completed and rolled_back mean every item got ' +
        'there; completed_with_failures and rollback_incomplete list what did not (see `unfinished`)',
    }),
    requestedBy: Type.String({ description: 'Name of the requesting token' }),
    idempotencyKey: Type.Union([Type.String(), Type.Null()]),
    itemCount: Type.Integer(),
    tenantCount: Type.Integer(),
    requiresBreakGlass: Type.Boolean(),
    planHash: Type.Union([Type.String(), Type.Null()]),
    plan: Type.Union([Type.Ref('Plan'), Type.Null()]),
    rejection: Type.Union([
      Type.Any({ description: "Counts per class, first offenders, and the token's scope when IDs were out_of_scope" }),
      Type.Null(),
    ]),
    rollout: Type.Any({ description: 'Effective rollout policy' }),
    haltPolicy: Type.Any({ description: 'Effective halt policy' }),
    currentWave: Type.Union([Type.Integer(), Type.Null()], {
      description:
        'Index of the wave being run or baked, from 0 (the canary); null before the start. Text for people (halt reasons, the CLI, the live view) counts waves from 1: index 0 is "wave 1 of N".',
    }),
    haltReason: Type.Union([Type.String(), Type.Null()], {
      description:
        'Why it stopped or paused, for people, e.g. "wave 2 of 5: 3 consecutive item failures (limit 3)"; null otherwise. What is done about a stop after it (an operator\'s rollback or abort, a rollback that ends incomplete) keeps the cause in parentheses: "rollback by sre-operator: downstream fixed (halted: wave 2 of 5: …)".',
    }),
    bakeUntil: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description:
        'While baking: when the bake after the current wave ends and the next wave may start (probes permitting). A resume after a pause during a bake bakes again in full. Null in any other state',
    }),
    throttled: Type.Optional(
      Type.Union(
        [
          Type.Object({
            cap: Type.String({ description: 'maxItemsPerMinute or maxTenantsPerMinute (rollout)' }),
            until: Type.String({ format: 'date-time', description: 'When the next window lets the held items run' }),
          }),
          Type.Null(),
        ],
        {
          description:
            'A running operation whose velocity cap holds items back right now: which cap and until when (why it does not move). Null otherwise',
          example: { cap: 'maxItemsPerMinute', until: '2026-12-01T15:41:00.000Z' },
        },
      ),
    ),
    waiting: Type.Optional(Waiting),
    refused: Type.Optional(
      Type.Union(
        [
          Type.Object({
            command: Type.String({
              description: 'The command that was refused: start, approve (autoStart), auto_start, rollback, …',
            }),
            code: Type.String({ description: 'Its error code: PLAN_STALE, RESOURCES_IN_FLIGHT or ADAPTER_CHANGED' }),
            message: Type.String({ description: 'The refusal as its caller got it: what changed, and what to do' }),
            by: Type.String({ description: 'Who asked' }),
            at: Type.String({ format: 'date-time' }),
          }),
          Type.Null(),
        ],
        {
          description:
            'The last command refused because the plan no longer holds against the registry (PLAN_STALE) or its resources are held by another live operation (RESOURCES_IN_FLIGHT), shown while the operation stays in the state it was refused in: why it does not move (a stale plan never starts; abort it and plan again). The next transition clears it. Null otherwise',
          example: {
            command: 'start',
            code: 'PLAN_STALE',
            message:
              '1 planned resource(s) changed in the registry since the plan was made (e.g. app_1: it is protected now); nothing was started. Abort this operation (POST /v1/operations/op_lx2k9a1b2c3d4e5f6/abort with a reason; its locks hold the planned resources), then submit a new plan.',
            by: 'deploy-bot',
            at: '2026-12-01T16:20:00.000Z',
          },
        },
      ),
    ),
    progress: Type.Optional({
      ...Progress,
      description:
        "As in GET /v1/operations: submitted items (a cascade's descendants go with their parent), done and failed by the forward run, and what rollbacks restored. counts has every ledger state, descendants included",
    }),
    waveProgress: Type.Optional(
      Type.Array(Type.Object({ wave: Type.Integer(), counts: Type.Record(Type.String(), Type.Integer()) }), {
        description: 'Item counts per wave and state',
      }),
    ),
    counts: Type.Optional(
      Type.Object(
        {
          items: Type.Integer({ description: 'Every item, cascaded descendants included' }),
          byState: Type.Record(Type.String(), Type.Integer(), { description: 'Items by ledger state' }),
          pending: Type.Optional(
            Type.Integer({
              description:
                'Items not settled yet (pending or claimed): while the operation runs, these are part of notRestored, notErased or notPurged without having failed',
            }),
          ),
          restored: Type.Optional(Type.Integer({ description: 'Restores: items restored (ledger state done)' })),
          notRestored: Type.Optional(Type.Integer({ description: 'Restores: items not (or not yet) restored' })),
          erased: Type.Optional(
            Type.Integer({ description: 'Erasures: items hard-deleted with their snapshot keys destroyed (done)' }),
          ),
          notErased: Type.Optional(Type.Integer({ description: 'Erasures: items not (or not yet) erased' })),
          purged: Type.Optional(Type.Integer({ description: 'Purges: items hard-deleted (ledger state done)' })),
          notPurged: Type.Optional(Type.Integer({ description: 'Purges: items not (or not yet) purged' })),
        },
        { description: 'Item counts over the whole ledger' },
      ),
    ),
    unfinished: Type.Optional(
      Type.Object(
        {
          count: Type.Integer(),
          items: Type.Array(
            Type.Object({
              resourceId: Type.String(),
              tenantId: Type.String(),
              state: Type.String(),
              lastError: Type.Union([Type.String(), Type.Null()]),
            }),
            { description: 'The first 100; page through all with the items route (filter by state)' },
          ),
        },
        {
          description:
            'completed_with_failures and a halted delete: the items that failed; rollback_incomplete: the executed items that were not restored; a restore (erasure, purge) that ended completed_with_failures or cancelled, or is halted: every item it did not restore (erase, purge), those with an error first',
        },
      ),
    ),
    drills: Type.Optional(
      Type.Array(
        Type.Object({
          wave: Type.Integer({ description: 'The wave whose item was drilled' }),
          resourceId: Type.Union([Type.String(), Type.Null()], { description: 'The item restored and deleted again' }),
          outcome: Type.String({
            description: 'running, ok, failed, or abandoned (the operation stopped before an item was picked)',
          }),
          detail: Type.Union([Type.String(), Type.Null()], { description: 'Why it failed' }),
          itemState: Type.Union([Type.String(), Type.Null()], {
            description:
              'Where the drill left the item: deleted (as the ledger says), live or unknown (the ledger item is failed)',
          }),
          startedAt: Type.String({ format: 'date-time' }),
          finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
        }),
        {
          description:
            'Restore drills (rollout.restoreDrill, soft deletes): one item of the first wave that deleted anything, restored, compared with its pre-delete snapshot and deleted again',
        },
      ),
    ),
    approvals: Type.Optional(
      Type.Array(
        Type.Object({
          by: Type.String({ description: "The approver's token name" }),
          role: Type.String(),
          at: Type.String({ format: 'date-time' }),
        }),
        { description: 'The approvals of the plan as it stands (GET of one operation), oldest first' },
      ),
    ),
    approvalsNeeded: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description:
          'A planned operation: the approvals it still needs before it can start, in words (break-glass: two people, one an admin); null otherwise',
      }),
    ),
    expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description:
        'A planned or approved operation expires (state expired) if not started by then; an expired one keeps the time it expired at. Null in other states',
    }),
    finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
    command: Type.Optional(
      Type.Object(
        {
          action: Type.String({ description: 'The command (pause, resume, abort, …)' }),
          from: Type.String({ description: 'The state this command found' }),
          to: Type.String({ description: 'The state this command left (the same when it changed nothing)' }),
          changed: Type.Boolean({ description: 'Whether this command changed the operation' }),
          approvalsNeeded: Type.Optional(
            Type.String({
              description:
                'When the operation is still planned after this command (an approval that was not the last): the approvals it still needs before it can start',
              example:
                "an admin's approval (break-glass needs one of its two approvals by an admin; 1 in, none by an admin)",
            }),
          ),
          warning: Type.Optional(
            Type.String({
              description:
                'A signal whose tenantId is not in the registry, or has no item in this operation: likely a typo. The signal was recorded (and halted a running operation) all the same',
              example: 'tenant tenant_00l2 is not in the registry (a typo?); the signal was recorded all the same',
            }),
          ),
        },
        {
          description:
            "Only in the answer to an operator command: what this request did. `state` is where the operation is when the answer was read, which another request may have moved on since (two operators' pause and resume)",
        },
      ),
    ),
    links: Type.Object({
      self: Type.String(),
      items: Type.String(),
      tenants: Type.String({ description: 'The affected tenants (with their contacts for admins and operators)' }),
      report: Type.Union([Type.String(), Type.Null()]),
    }),
  },
  {
    $id: 'Operation',
    description: 'An operation with its plan and state',
    example: {
      id: 'op_lx2k9a1b2c3d4e5f6',
      kind: 'delete',
      action: 'delete',
      scope: null,
      targetType: 'app',
      mode: 'soft',
      reason: 'Remove legacy app',
      ticket: 'CHG-2042',
      state: 'planned',
      requestedBy: 'ci-pipeline',
      idempotencyKey: 'cleanup-2042',
      itemCount: 2,
      tenantCount: 2,
      requiresBreakGlass: false,
      planHash: '3f1c…',
      plan: null,
      rejection: null,
      rollout: {},
      haltPolicy: {},
      currentWave: null,
      haltReason: null,
      bakeUntil: null,
      progress: { items: 2, done: 0, failed: 0, pending: 2, restoring: 0, restored: 0, restoreFailed: 0 },
      expiresAt: '2026-11-25T12:00:00.000Z',
      finishedAt: null,
      createdAt: '2026-11-24T12:00:00.000Z',
      updatedAt: '2026-11-24T12:00:00.000Z',
      links: {
        self: '/v1/operations/op_lx2k9a1b2c3d4e5f6',
        items: '/v1/operations/op_lx2k9a1b2c3d4e5f6/items',
        tenants: '/v1/operations/op_lx2k9a1b2c3d4e5f6/tenants',
        report: null,
      },
    },
  },
);

export const DryRunView = Type.Object(
  { dryRun: Type.Literal(true), plan: Type.Ref('Plan') },
  { description: 'A plan that was not stored', example: { dryRun: true, plan: { itemCount: 2 } } },
);

export const ReportPage = Type.Object(
  {
    counts: Type.Record(Type.String(), Type.Integer()),
    items: Type.Array(
      Type.Object({
        index: Type.Integer(),
        id: Type.String(),
        escaped: Type.Optional(
          Type.String({
            description:
              'The ID with every character outside printable ASCII escaped (\\uXXXX): shows look-alike letters (a Cyrillic "а" for "a")',
          }),
        ),
        class: Type.String(),
        actualType: Type.Union([Type.String(), Type.Null()]),
        tenantId: Type.Union([Type.String(), Type.Null()]),
        heldBy: Type.Optional(
          Type.String({
            description: 'in_flight: the live operation that holds the resource (finish or abort it first)',
          }),
        ),
        deletedBy: Type.Optional(
          Type.String({
            description:
              'uncertain (restores): the delete whose call for it had an unknown outcome and then failed; a rollback of that delete restores it from its snapshot',
          }),
        ),
        via: Type.Optional(
          Type.Object(
            {
              id: Type.String(),
              type: Type.Union([Type.String(), Type.Null()]),
              tenantId: Type.Union([Type.String(), Type.Null()]),
            },
            {
              description:
                'The listed resource is rejected for a resource its cascade takes (a child, a grandchild…), not for itself: that resource, its type and tenant',
              example: { id: 'app_00005_01', type: 'app', tenantId: 'tenant_00005' },
            },
          ),
        ),
        purgeAfter: Type.Optional(
          Type.String({ format: 'date-time', description: 'within_retention (purges): when its retention ends' }),
        ),
        state: Type.Optional(
          Type.String({ description: 'already_deleted: the state it is in (soft_deleted | purged)' }),
        ),
      }),
    ),
    nextCursor: Type.Union([Type.String(), Type.Null()]),
    links: PageLinks,
  },
  {
    description: 'Every offending ID of a rejected plan, in submission order',
    example: {
      counts: { ok: 0, type_mismatch: 1 },
      items: [{ index: 0, id: 'site_1', class: 'type_mismatch', actualType: 'site', tenantId: 't_1' }],
      nextCursor: null,
      links: { next: null },
    },
  },
);
