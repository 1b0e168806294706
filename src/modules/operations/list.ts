// GET /v1/operations: a page of operation summaries with their progress. A list is what a
// dashboard polls, so it never carries plans or policies (a 1M-item plan's tenant list is
// megabytes): the full operation is GET /v1/operations/{id}. Progress comes from the wave
// counters (operation_waves, a few rows per operation) in the same statement as the page, not from
// counting the item ledger (up to a million rows per operation) and not one query per operation.
import { Type, type Static } from '@fastify/type-provider-typebox';
import type { Queryable } from '../../lib/sql.ts';
import type { Operation } from '../../generated/prisma/client.ts';
import { ListFilter, listFilters, nextLink, splitPage, readLimit } from '../../lib/list-query.ts';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, IdString, PageLinks, type App } from '../../lib/schemas.ts';
import { COUNTERS_JSON_SQL, MOVES_JSON_SQL, type WaveCounter, type WaveMove } from '../execution/wave-moves.ts';
import { checkOperationCursor } from './cursors.ts';
import { OP_STATES } from './lifecycle-types.ts';
import { Progress, progressFrom } from './progress.ts';
import { LAST_PROGRESS_SQL } from './repository.ts';
import { TargetTypeView, Waiting } from './schemas.ts';
import { bakeUntilOf, NO_HOLDS, QUEUED_STATES, throttleOf, waitingOf, type QueueHolds } from './waiting.ts';

const KINDS = ['delete', 'erase', 'restore', 'purge'] as const;
const LIST_PATH = '/v1/operations';

export const OperationsQuery = Type.Object(
  {
    state: ListFilter(OP_STATES, 'Only operations in one of these states'),
    kind: ListFilter(KINDS, 'Only operations of one of these kinds'),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 200, default: 50, description: 'Page size (default 50)' }),
    ),
    cursor: Type.Optional(
      IdString({
        description: 'nextCursor of the previous page (an operation ID); anything else is 400 INVALID_CURSOR',
      }),
    ),
  },
  { additionalProperties: false },
);
type OperationsQuery = Static<typeof OperationsQuery>;

const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);

export const OperationSummary = Type.Object(
  {
    id: Type.String(),
    kind: Type.String({ description: 'delete, erase, restore or purge' }),
    action: Type.String({ description: 'Same as kind' }),
    targetType: TargetTypeView,
    mode: Type.String(),
    state: Type.String({ description: 'See Operation.state' }),
    reason: Type.String(),
    ticket: Type.String(),
    requestedBy: Type.String({ description: 'Name of the requesting token' }),
    itemCount: Type.Integer({
      description:
        'Items of the plan, cascaded descendants included (0 for a rejected operation: see rejectionSummary)',
    }),
    tenantCount: Type.Integer(),
    currentWave: Type.Union([Type.Integer(), Type.Null()], {
      description: 'Index of the wave it is in or ended in, from 0 (the CLI and /ui show it from 1: "wave 3/3")',
    }),
    waveCount: Type.Integer({ description: 'Waves of the plan (0 for a rejected operation)' }),
    haltReason: Nullable(Type.String()),
    bakeUntil: Nullable(
      Type.String({
        format: 'date-time',
        description: 'While baking: when the bake after the current wave ends (as Operation.bakeUntil); null otherwise',
      }),
    ),
    throttled: Type.Union(
      [
        Type.Object({
          cap: Type.String({ description: 'maxItemsPerMinute or maxTenantsPerMinute (rollout)' }),
          until: Type.String({ format: 'date-time' }),
        }),
        Type.Null(),
      ],
      { description: 'A running operation whose velocity cap holds items back right now (as Operation.throttled)' },
    ),
    waiting: Type.Union(Waiting.anyOf, {
      description:
        'Why a live operation does not move now: the work queue or its workers away, held items, restore retries, no outcome for a while, a late bake end (as Operation.waiting). Null otherwise',
    }),
    progress: Progress,
    planHash: Nullable(Type.String()),
    rejectionSummary: Type.Union(
      [
        Type.Object({
          submitted: Type.Integer({
            description:
              "IDs the plan was judged on: the submitted list (a restore's or purge's scope: the IDs it named)",
          }),
          counts: Type.Record(Type.String(), Type.Integer(), {
            description: 'IDs of each class that rejected it (ok and classes with none left out)',
          }),
        }),
        Type.Null(),
      ],
      {
        description:
          'A rejected operation (nothing planned, so itemCount is 0): what was submitted and why it was rejected, ' +
          'e.g. { "submitted": 3, "counts": { "type_mismatch": 2 } }. GET /v1/operations/{id} has the full `rejection` ' +
          'with the first offenders, and its report every one. Null in any other state',
      },
    ),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
    finishedAt: Nullable(Type.String({ format: 'date-time' })),
    links: Type.Object({ self: Type.String({ description: 'The full operation, with its plan' }) }),
  },
  {
    $id: 'OperationSummary',
    description: 'An operation in a list: its state and progress, without plan or policies',
  },
);

const SUMMARY_EXAMPLE = {
  id: 'op_lx2k9a1b2c3d4e5f6',
  kind: 'delete',
  action: 'delete',
  targetType: 'app',
  mode: 'soft',
  state: 'running',
  reason: 'Remove legacy Jira Insight app',
  ticket: 'CHG-2042',
  requestedBy: 'ci-pipeline',
  itemCount: 2000,
  tenantCount: 40,
  currentWave: 2,
  waveCount: 5,
  haltReason: null,
  bakeUntil: null,
  throttled: null,
  progress: { items: 2000, done: 310, failed: 0, pending: 1690, restoring: 0, restored: 0, restoreFailed: 0 },
  planHash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  rejectionSummary: null,
  createdAt: '2026-11-24T12:00:00.000Z',
  updatedAt: '2026-11-24T12:05:00.000Z',
  finishedAt: null,
  links: { self: '/v1/operations/op_lx2k9a1b2c3d4e5f6' },
};

export const OperationsPage = Type.Object(
  {
    items: Type.Array(Type.Ref('OperationSummary')),
    nextCursor: Nullable(Type.String({ description: 'Pass as `cursor` for the next page; null: last page' })),
    links: PageLinks,
  },
  {
    description: 'Operation summaries, newest first',
    example: {
      items: [SUMMARY_EXAMPLE],
      nextCursor: 'op_lx2k9a1b2c3d4e5f6',
      links: { next: '/v1/operations?state=running&state=paused&limit=1&cursor=op_lx2k9a1b2c3d4e5f6' },
    },
  },
);

interface SummaryRow {
  id: string;
  action: string;
  target_type: string;
  mode: string;
  state: string;
  reason: string;
  ticket: string;
  requested_by_name: string;
  item_count: number;
  tenant_count: number;
  current_wave: number | null;
  halt_reason: string | null;
  bake_until: Date | null;
  throttled_by: string | null;
  throttled_until: Date | null;
  restore_wait: Operation['restoreWait'];
  last_progress_at: Date | null;
  plan_hash: string | null;
  rejection_counts: Record<string, number> | null;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
  wave_counters: WaveCounter[];
  wave_moves: WaveMove[];
}

/**
 * A rejected operation's counts per class (the stored rejection's, which name every class, ok
 * included): the IDs judged and the classes that rejected it. The list showed a rejected plan as
 * "0 items" (a trial): itemCount counts the plan, and there is none.
 */
function rejectionSummary(counts: Record<string, number>) {
  const all = Object.entries(counts).filter(([, n]) => typeof n === 'number');
  return {
    submitted: all.reduce((sum, [, n]) => sum + n, 0),
    counts: Object.fromEntries(all.filter(([c, n]) => c !== 'ok' && n > 0)),
  };
}

/**
 * One statement for the page and its progress; newest first (IDs sort by creation), keyset on id.
 * `holdsOf`: what holds queued work, as the single view asks it (app.queueHolds), asked once per
 * page and only when a row is in a queued state.
 */
export async function listSummaries(
  db: Queryable,
  q: OperationsQuery & { limit: number },
  holdsOf: () => Promise<QueueHolds> = async () => NO_HOLDS,
) {
  const res = await db.query<SummaryRow>(
    `SELECT o.id, o.action, o.target_type, o.mode, o.state, o.reason, o.ticket, o.requested_by_name, o.item_count,
            o.tenant_count, o.current_wave, o.halt_reason, o.bake_until, o.throttled_by, o.throttled_until,
            o.plan_hash, o.created_at, o.updated_at, o.finished_at, o.restore_wait,
            ${LAST_PROGRESS_SQL} AS last_progress_at,
            CASE WHEN o.state = 'rejected' THEN o.rejection->'counts' END AS rejection_counts,
            ${COUNTERS_JSON_SQL('o.id')} AS wave_counters, ${MOVES_JSON_SQL('o.id')} AS wave_moves
     FROM operations o
     WHERE ($1::text[] IS NULL OR o.state = ANY($1::text[]))
       AND ($2::text[] IS NULL OR o.action = ANY($2::text[]))
       AND ($3::text IS NULL OR o.id < $3)
     ORDER BY o.id DESC
     LIMIT $4`,
    [q.state ?? null, q.kind ?? null, q.cursor ?? null, q.limit],
  );
  const holds = res.rows.some((r) => QUEUED_STATES.has(r.state)) ? await holdsOf() : NO_HOLDS;
  return res.rows.map((r) => summaryOf(r, holds));
}

function summaryOf(r: SummaryRow, holds: QueueHolds) {
  // What holds it, in the fields the single view reads them from (views.ts, waiting.ts).
  const held = {
    state: r.state,
    throttledBy: r.throttled_by,
    throttledUntil: r.throttled_until,
    restoreWait: r.restore_wait,
    bakeUntil: r.bake_until,
  };
  return {
    id: r.id,
    kind: r.action,
    action: r.action,
    targetType: r.target_type,
    mode: r.mode,
    state: r.state,
    reason: r.reason,
    ticket: r.ticket,
    requestedBy: r.requested_by_name,
    itemCount: r.item_count,
    tenantCount: r.tenant_count,
    currentWave: r.current_wave,
    waveCount: r.wave_counters.length,
    haltReason: r.halt_reason,
    // As the single view says them (views.ts, waiting.ts): why a live operation does not move now.
    bakeUntil: bakeUntilOf(held),
    throttled: throttleOf(held),
    // A list read as `running` while Redis was away (a trial): it says what the single view says.
    waiting: waitingOf(held, QUEUED_STATES.has(r.state) ? { ...holds, lastProgressAt: r.last_progress_at } : NO_HOLDS),
    // The single view's progress, by the same function (progress.ts).
    progress: progressFrom(r.wave_counters, r.wave_moves, r.state === 'rolling_back'),
    planHash: r.plan_hash,
    rejectionSummary: r.rejection_counts ? rejectionSummary(r.rejection_counts) : null,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    finishedAt: r.finished_at?.toISOString() ?? null,
    links: { self: `${LIST_PATH}/${r.id}` },
  };
}

export function listRoute(app: App) {
  app.get(
    '/operations',
    {
      config: { auth: 'any' },
      preValidation: listFilters({ state: OP_STATES, kind: KINDS }),
      schema: {
        operationId: 'listOperations',
        tags: ['operations'],
        summary: 'List operations',
        description:
          'Summaries with progress, newest first: no plan and no policies (GET /v1/operations/{id} has them). ' +
          'Filter by `state` and `kind`, each taking several values (`state=running&state=paused` or ' +
          '`state=running,paused`); an unknown value is 400 VALIDATION_FAILED naming the parameter and its allowed values. ' +
          'Page with `cursor` = `nextCursor` of the previous page, or follow `links.next`; a cursor the list did not give is 400 INVALID_CURSOR.',
        querystring: OperationsQuery,
        response: {
          200: OperationsPage,
          ...errorResponses(401),
          400: errorResponse(400, ERROR_EXAMPLES.invalidCursor),
        },
      },
    },
    async (req) => {
      const limit = req.query.limit!;
      await checkOperationCursor(app.db.pool, req.query.cursor);
      const { items, last } = splitPage(
        await listSummaries(app.db.pool, { ...req.query, limit: readLimit(limit) }, () => app.queueHolds('running')),
        limit,
      );
      const nextCursor = last?.id ?? null;
      return { items, nextCursor, links: { next: nextLink(LIST_PATH, req.query, 'cursor', nextCursor) } };
    },
  );
}
