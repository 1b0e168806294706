// A restore's or a purge's items are checked against the registry right before each chunk's calls,
// as `start` checks the whole plan (restores/stale.ts): a resource made active again since the plan
// (restored or re-created by someone else, or said to be active by an import), purged, gone, or
// moved to another type or tenant is not acted on. Without it, a purge whose bake outlived an
// import of the resource as active hard-deleted the live resource and ended `completed`, and a
// restore wrote its snapshot over a resource brought back and edited meanwhile (a trial): the plan
// was fresh when it started, and nothing looked again between waves.
import type pg from 'pg';
import type { AdapterItem, ApplyOptions, DestructiveAction, ItemResult, TargetAdapter } from '../adapters/index.ts';
import { applyAllBut } from './protection-recheck.ts';
import { CHANGED_SINCE_PLAN, TENANT_CHANGED } from '../restores/stale.ts';
import { familyChild } from '../purges/leave-out.ts';
import { isExternal } from '../restores/history.ts';
import type { ChunkDeps } from './chunk.ts';
import type { ClaimedItem, Outcome } from './ledger.ts';

interface Changed {
  seq: number;
  resource_id: string;
  type: string | null;
  tenant_id: string | null;
  state: string | null;
  planned_type: string;
  planned_tenant: string;
  /** Of another tenant since the plan (not a restore's item moved before its delete: TENANT_CHANGED). */
  moved: boolean;
  /** A restore's submitted item: its registry parent, when that is deleted now. */
  deleted_parent: string | null;
  parent_state: string | null;
}

/**
 * The ledger seqs among `seqs` whose resource changed since the plan, each with what it is now.
 * The start's plan_fresh predicate (restores/stale.ts), for a chunk's rows only.
 */
export async function changedSincePlan(
  pool: Pick<pg.Pool, 'query'>,
  operationId: string,
  seqs: number[],
): Promise<Map<number, string>> {
  if (seqs.length === 0) return new Map();
  const r = await pool.query<Changed>(
    `SELECT i.seq, i.resource_id, r.type, r.tenant_id, r.state, i.resource_type AS planned_type,
            i.tenant_id AS planned_tenant, ${TENANT_CHANGED} AS moved, p.id AS deleted_parent, p.state AS parent_state
     FROM unnest($2::int[]) AS s(seq)
     JOIN operation_items i ON i.operation_id = $1 AND i.seq = s.seq
     JOIN operations o ON o.id = i.operation_id
     LEFT JOIN resources r ON r.id = i.resource_id LEFT JOIN resource_types t ON t.name = r.type
     -- A restore's submitted item comes back under a live parent (the plan refused it as
     -- parent_deleted otherwise; its descendants come with it): one deleted since, by another
     -- operation, would get it back under a deleted parent (a trial).
     LEFT JOIN resources p ON o.action = 'restore' AND i.parent_seq IS NULL AND p.id = r.parent_id AND p.state <> 'active'
     WHERE p.id IS NOT NULL OR ${CHANGED_SINCE_PLAN}`,
    [operationId, seqs],
  );
  return new Map(r.rows.map((x) => [x.seq, nowIs(x)]));
}

function nowIs(x: Changed): string {
  if (x.state === null) return `${x.resource_id} is no longer in the registry`;
  if (x.type !== x.planned_type) return `${x.resource_id} is of type ${x.type} now (planned: ${x.planned_type})`;
  if (x.moved) return `${x.resource_id} belongs to tenant ${x.tenant_id} now (planned: ${x.planned_tenant})`;
  // Before "active again": another system's resource reads active in the registry while deleted.
  if (x.deleted_parent)
    return `the parent of ${x.resource_id}, ${x.deleted_parent}, is ${x.parent_state} since the plan`;
  if (x.state === 'purged') return `${x.resource_id} was purged since the plan`;
  return `${x.resource_id} is active again since the plan (restored or re-created elsewhere, or imported as active)`;
}

/**
 * Splits a chunk's items: those to leave alone, failed for good before their snapshot and
 * write-ahead mark (so never sent) because their resource changed since the plan, or one of their
 * descendants did (the parent's call would take or overwrite it); and the rest. `what` names the
 * operation's action in the error.
 */
export async function refuseChanged<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'changedSincePlan'>,
  opId: string,
  items: ClaimedItem[],
  what: 'purged' | 'restored',
): Promise<{ refused: Outcome[]; unchanged: ClaimedItem[] }> {
  // An item an earlier run may have sent already is sent again with its key, whatever the registry
  // reads now: its own call may be what changed it (a purged row, a restored one).
  const fresh = items.filter((i) => i.executedSeq === null);
  if (!deps.changedSincePlan || fresh.length === 0) return { refused: [], unchanged: items };
  const changed = await deps.changedSincePlan(
    opId,
    fresh.flatMap((i) => [i.seq, ...i.descendants.map((d) => d.seq)]),
  );
  if (changed.size === 0) return { refused: [], unchanged: items };
  const refused = fresh.flatMap((i): Outcome[] => {
    const own = changed.get(i.seq);
    const kid = own ? undefined : i.descendants.find((d) => changed.has(d.seq));
    const why = own ?? (kid && `its descendant ${changed.get(kid.seq)}`);
    if (!why) return [];
    const error = `not ${what}: ${why}; plan a new one if it is still wanted`.slice(0, 500);
    // Nothing sent: a mark this run set before asking (a restore's later part) is taken back.
    return [{ seq: i.seq, state: 'failed', error, permanent: true, unapplied: true }];
  });
  const left = new Set(refused.map((o) => o.seq));
  return { refused, unchanged: items.filter((i) => !left.has(i.seq)) };
}

/**
 * `inner` whose hard deletes ask the registry again right before each call. A purge chunk's items
 * are checked once (refuseChanged) before up to a chunk's calls go out one by one: an app imported
 * as active while the chunk's first call was out was hard-deleted minutes later, its item recorded
 * done and its row rewritten purged (a probe). One statement per call, for its own items: purges are
 * not the hot path the delete's change log (protection-recheck.ts) was built for. `seqOf`: each
 * item's ledger seq; `sentBefore`: items an earlier run marked, sent again with their key whatever
 * the registry says (refuseChanged).
 */
export function recheckingChanges<Tx>(
  inner: TargetAdapter,
  deps: Pick<ChunkDeps<Tx>, 'changedSincePlan' | 'childrenHoldingBack'>,
  opId: string,
  seqOf: ReadonlyMap<string, number>,
  sentBefore: ReadonlySet<number>,
): TargetAdapter {
  const changedSincePlan = deps.changedSincePlan;
  if (!changedSincePlan) return inner;
  return {
    ...inner,
    async apply(action: DestructiveAction, batch: AdapterItem[], opts: ApplyOptions): Promise<ItemResult[]> {
      if (action !== 'hardDelete') return inner.apply(action, batch, opts);
      const seqs = batch.map((i) => seqOf.get(i.resourceId)!).filter((s) => !sentBefore.has(s));
      const changed = seqs.length ? await changedSincePlan(opId, seqs) : new Map<number, string>();
      const fresh = batch.filter((i) => !sentBefore.has(seqOf.get(i.resourceId)!));
      const heldBack = fresh.length
        ? ((await deps.childrenHoldingBack?.(opId, fresh)) ?? new Map<string, string>())
        : new Map<string, string>();
      const why = batch.map((i) => {
        const w = changed.get(seqOf.get(i.resourceId)!) ?? heldBack.get(i.resourceId);
        return w && `not purged: ${w}; plan a new one if it is still wanted`.slice(0, 500);
      });
      return applyAllBut(inner, action, batch, opts, why);
    },
  };
}

/** The registry parent of each of these resources that has one. */
export async function parentsOf(pool: Pick<pg.Pool, 'query'>, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const r = await pool.query<{ id: string; parent_id: string }>(
    'SELECT id, parent_id FROM resources WHERE id = ANY($1::text[]) AND parent_id IS NOT NULL',
    [ids],
  );
  return new Map(r.rows.map((x) => [x.id, x.parent_id]));
}

/**
 * Of a purge's items (`items`: resource and type), those with a child they must not go before
 * (purges/leave-out.ts familyChild) that the purge does not hold (created, imported or moved in
 * since the plan), or that is live again (active in the registry, for a registry adapter's
 * resource: its own item is refused), each with why. The plan kept such parents back; a child
 * imported under a site during a bake was left live under a purged site (a trial). Asked by
 * resource, not through the ledger: joined to the ledger, PostgreSQL read the operation's every
 * item per chunk (a purge of 10,000 leaves in one wave: 1.23 → 5.04 s, npm run bench -- purge).
 */
export async function childrenHoldingBack(
  pool: Pick<pg.Pool, 'query'>,
  operationId: string,
  items: readonly { resourceId: string; type: string }[],
): Promise<Map<string, string>> {
  // Most items have no child at all: the lateral's cost estimate for a whole chunk crossed
  // PostgreSQL's JIT threshold (10-40 ms of compiling per chunk), so it only asks about parents.
  const parents = items.length
    ? await pool.query<{ id: string }>(
        `SELECT DISTINCT parent_id AS id FROM resources WHERE parent_id = ANY($1::text[]) AND state <> 'purged'`,
        [items.map((i) => i.resourceId)],
      )
    : { rows: [] };
  const having = new Set(parents.rows.map((x) => x.id));
  const some = items.filter((i) => having.has(i.resourceId));
  if (some.length === 0) return new Map();
  const r = await pool.query<{ parent: string; child: string; state: string }>(
    `SELECT x.id AS parent, k.id AS child, k.state
     FROM unnest($2::text[], $3::text[]) AS x(id, type)
     CROSS JOIN LATERAL (
       SELECT ch.id, ch.state FROM resources ch JOIN resource_types cht ON cht.name = ch.type
       WHERE ch.parent_id = x.id AND ch.state <> 'purged'
         AND (${familyChild('ch', 'x.type')}
              -- One of an HTTP type that Blastgate acted on since the plan (its row stays active
              -- when deleted): a folder deleted after its parent's purge was planned was left
              -- deleted under a purged parent (a probe). Any act since counts: plan a new one.
              OR (ch.state = 'active' AND ${isExternal('cht')} AND EXISTS (
                SELECT 1 FROM snapshots s WHERE s.resource_id = ch.id AND s.operation_id <> $1
                  AND s.created_at > (SELECT created_at FROM operations WHERE id = $1))))
         AND (NOT EXISTS (SELECT 1 FROM resource_locks lk WHERE lk.resource_id = ch.id AND lk.operation_id = $1)
              OR (ch.state = 'active' AND NOT ${isExternal('cht')}))
       LIMIT 1
     ) k`,
    [operationId, some.map((i) => i.resourceId), some.map((i) => i.type)],
  );
  return new Map(
    r.rows.map((x) => [
      x.parent,
      `${x.parent} has a child ${x.child} (${x.state}) that this purge does not take (created, moved in, made active or acted on since the plan): its hard delete would take it or leave it without a parent`,
    ]),
  );
}
