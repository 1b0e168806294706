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
  /**
   * A purge's item: a child it must not go before (purges/leave-out.ts familyChild) that this purge
   * does not hold, or one live again.
   */
  new_child: string | null;
  new_child_state: string | null;
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
            i.tenant_id AS planned_tenant, ${TENANT_CHANGED} AS moved, p.id AS deleted_parent, p.state AS parent_state,
            kid.id AS new_child, kid.state AS new_child_state
     FROM unnest($2::int[]) AS s(seq)
     JOIN operation_items i ON i.operation_id = $1 AND i.seq = s.seq
     JOIN operations o ON o.id = i.operation_id
     LEFT JOIN resources r ON r.id = i.resource_id LEFT JOIN resource_types t ON t.name = r.type
     -- A restore's submitted item comes back under a live parent (the plan refused it as
     -- parent_deleted otherwise; its descendants come with it): one deleted since, by another
     -- operation, would get it back under a deleted parent (a trial).
     LEFT JOIN resources p ON o.action = 'restore' AND i.parent_seq IS NULL AND p.id = r.parent_id AND p.state <> 'active'
     -- A purge's item with a child its hard delete would take or orphan that the purge does not
     -- hold (created, imported or moved in since the plan): the plan kept such a parent back, and a
     -- child imported under a site during a bake was left under a purged site (a trial).
     LEFT JOIN LATERAL (
       SELECT ch.id, ch.state FROM resources ch JOIN resource_types cht ON cht.name = ch.type
       WHERE o.action = 'purge' AND ch.parent_id = i.resource_id AND ch.state <> 'purged'
         AND ${familyChild('ch', 'coalesce(i.resource_type, o.target_type)')}
         -- One it holds is purged before it (family-waves.ts) unless it is live again: active in
         -- the registry, which for a registry adapter's resource says so (its own item is refused).
         AND (NOT EXISTS (SELECT 1 FROM resource_locks lk WHERE lk.resource_id = ch.id AND lk.operation_id = o.id)
              OR (ch.state = 'active' AND NOT ${isExternal('cht')}))
       ORDER BY ch.id LIMIT 1
     ) kid ON true
     WHERE p.id IS NOT NULL OR kid.id IS NOT NULL OR ${CHANGED_SINCE_PLAN}`,
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
  if (x.new_child)
    return `${x.resource_id} has a child ${x.new_child} (${x.new_child_state}) that this purge does not take (created, moved in or made active since the plan): its hard delete would take it or leave it without a parent`;
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
  deps: Pick<ChunkDeps<Tx>, 'changedSincePlan'>,
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
      const why = batch.map((i) => {
        const w = changed.get(seqOf.get(i.resourceId)!);
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
