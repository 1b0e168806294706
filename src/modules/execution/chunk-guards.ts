// A delete chunk's refusals before anything is sent: items protected since the plan, items whose
// cascade would now take a child the plan does not list, and the per-call look at protection where
// no registry statement guards the call (protection-recheck.ts).
import type { AdapterItem, TargetAdapter } from '../adapters/index.ts';
import type { OwnAdapters } from './cascade-own.ts';
import type { ChunkDeps } from './chunk.ts';
import type { ClaimedItem, Outcome } from './ledger.ts';
import { NEW_CHILD } from './new-children.ts';
import { protectionRefusal, recheckingProtection, type FirstLook } from './protection-recheck.ts';
import type { OperationRecord } from './state.ts';

/** What the guard against protection since the plan covers: deletes and erasures (not restores or purges). */
const GUARDED_ACTIONS: readonly string[] = ['delete', 'erase'];

/**
 * The descendants whose protection no registry statement guards: all of an HTTP item's (its system
 * deletes them with it), and those sent through their own adapters under a registry item.
 */
export const unguarded =
  (adapter: TargetAdapter, own: OwnAdapters) =>
  <D extends { type: string }>(i: { descendants?: D[] }): D[] =>
    (i.descendants ?? []).filter((d) => adapter.kind === 'http' || own.has(d.type));

/** `sender`, looking at protection again right before each call (protection-recheck.ts) where no statement does. */
export function protectionRechecked<Tx>(
  deps: ChunkDeps<Tx>,
  op: OperationRecord,
  sender: TargetAdapter,
  items: AdapterItem[],
  watched: (i: AdapterItem) => AdapterItem[],
  /** The look refuseProtected took of these items (what the calls compare with first). */
  first?: FirstLook,
): TargetAdapter {
  if (!GUARDED_ACTIONS.includes(op.action) || !deps.protectedNow) return sender;
  // A registry item with nothing sent on its own is guarded by its statement: no query more.
  if (sender.kind !== 'http' && !items.some((i) => watched(i).length)) return sender;
  return recheckingProtection(
    sender,
    items,
    watched,
    {
      look: (ids) => deps.protectedNow!(ids, op.approvedTenants),
      ...(deps.protectionChangedSince ? { changedSince: (seen: string) => deps.protectionChangedSince!(seen) } : {}),
      ...(first ? { first } : {}),
    },
    () => deps.clock(),
  );
}

/**
 * A delete's (or erasure's) items whose resource or tenant was marked protected since the plan (an import while
 * the operation runs): failed for good, before the write-ahead mark (so never sent). The plan refused
 * protected resources and `start` refuses a plan they went stale under; this covers the run itself.
 * Also returns the look itself, which the part's calls compare with first (protectionRechecked).
 *
 * When no statement that may change protection committed since the plan's snapshot
 * (protectionSeen), what the plan saw still holds, and it saw none of these items protected
 * (classified `protected`, rejected) nor of a tenant protected beyond the ones its break-glass
 * covers: the rows are not read again. That look cost the efficiency bench's PostgreSQL ~45 µs of
 * its ~180 µs per item (`npm run bench -- statements`, BENCH_STATEMENTS_OF=efficiency).
 */
export async function refuseProtected<Tx>(
  deps: ChunkDeps<Tx>,
  op: OperationRecord,
  part: ClaimedItem[],
  adapter: TargetAdapter,
  /** Their descendants of these types are sent on their own: no registry statement guards them. */
  own: OwnAdapters,
): Promise<{ refused: Outcome[]; first?: FirstLook }> {
  if (!GUARDED_ACTIONS.includes(op.action) || !deps.protectedNow || part.length === 0) return { refused: [] };
  const kids = unguarded(adapter, own);
  const at = deps.clock();
  const seen = op.protectionSeen;
  if (seen && deps.protectionChangedSince && !(await deps.protectionChangedSince(seen)))
    return { refused: [], first: { at, look: { refusals: new Map(), seen } } };
  const look = await deps.protectedNow(
    [...part.map((i) => i.resourceId), ...part.flatMap((i) => kids(i).map((d) => d.resourceId))],
    op.approvedTenants,
  );
  const refused = part.flatMap((i): Outcome[] => {
    const why = protectionRefusal(look.refusals, i.resourceId, kids(i));
    return why === undefined ? [] : [{ seq: i.seq, state: 'failed', error: why, permanent: true }];
  });
  return { refused, first: { at, look } };
}

/**
 * A delete's items whose cascade would now take a child the plan does not list (new-children.ts):
 * failed for good, before the write-ahead mark (never sent). Not asked again of an item an earlier
 * run may have sent (its delete may stand; it is sent again with its key).
 */
export async function refuseNewChildren<Tx>(
  deps: ChunkDeps<Tx>,
  op: OperationRecord,
  part: ClaimedItem[],
): Promise<Outcome[]> {
  const fresh = part.filter((i) => i.executedSeq === null);
  if (op.action !== 'delete' || !deps.newChildren || fresh.length === 0) return [];
  const grown = await deps.newChildren(
    op.id,
    op.targetType,
    fresh.map((i) => i.resourceId),
    fresh.flatMap((i) => i.descendants.map((d) => d.resourceId)),
    fresh.flatMap((i) => i.descendants.map((d) => ({ id: d.resourceId, type: d.type, root: i.resourceId }))),
  );
  return fresh.flatMap((i): Outcome[] => {
    const child = grown.get(i.resourceId);
    return child ? [{ seq: i.seq, state: 'failed', error: NEW_CHILD(i.resourceId, child), permanent: true }] : [];
  });
}
