// Cascades that cross systems: a parent's delete reaches its descendants by itself only within
// its own system. The registry changes descendants kept in the same database in its one statement;
// an HTTP downstream cascades a delete to what it owns itself (the types behind the same base URL).
// A descendant kept in another system (an HTTP app under a registry site, a registry app under an
// HTTP site, an HTTP type behind another base URL) is deleted through its own type's adapter, each
// with its own call (and Idempotency-Key), and the parent only once every one of them succeeded.
// Otherwise the registry statement would write the app's registry row (the owning system's to say)
// and report it done while the owning system never heard of the delete, or an HTTP parent's call
// would report done while its registry children stayed `active` (new-user trials V and W).
//
// Order: deepest first, the parent last, so nothing is left live under a deleted parent; a
// parent whose cascade did not all go is not deleted, and says which descendant kept it. Restores
// go the other way, parent first (rollback-batch.ts sends them through the same split).
import { AppError } from '../../lib/errors.ts';
import {
  isSkipped,
  SKIPPED,
  type AdapterItem,
  type ApplyOptions,
  type DestructiveAction,
  type ItemFailed,
  type ItemResult,
  type TargetAdapter,
} from '../adapters/index.ts';
import { mapPool } from '../adapters/http-transport.ts';
import type { AdapterCache } from './adapters-cache.ts';
import type { DescendantOutcome } from './ledger.ts';

/** The adapters of descendant types that the parent's adapter does not change itself; an Error: unavailable. */
export type OwnAdapters = Map<string, TargetAdapter | Error>;

/**
 * Whether a delete through `root` changes a descendant whose adapter is `kid` by itself: both in
 * one system (registry rows in its one statement; an HTTP downstream's own cascade). A restore
 * takes such a descendant with its parent only when the root's cascade is `same_transaction`.
 */
export const changesWith = (root: TargetAdapter, kid: TargetAdapter | Error): boolean =>
  !(kid instanceof Error) && kid.system === root.system;

/**
 * Of these descendant types, those a delete through `root` must send through their own adapter.
 * Rejects only for a reason that may pass (a lost database connection); a type whose adapter
 * cannot be built is kept with the reason (its descendants fail, and so their parent).
 */
export async function ownAdapters(
  adapters: Pick<AdapterCache, 'get'>,
  root: TargetAdapter,
  types: Iterable<string>,
): Promise<OwnAdapters> {
  const own: OwnAdapters = new Map();
  for (const type of new Set(types)) {
    const kid = await adapters.get(type).then(
      (x) => x.adapter,
      (err: unknown) => {
        if (err instanceof AppError) return new Error(`adapter for type ${type} unavailable: ${err.message}`);
        throw err;
      },
    );
    if (!changesWith(root, kid)) own.set(type, kid);
  }
  return own;
}

const DELETES: readonly DestructiveAction[] = ['softDelete', 'hardDelete'];

/** Holds a slot of the operation's in-flight budget around one call (call-slots.ts). */
export type Slot = <T>(call: () => Promise<T>) => Promise<T>;

/**
 * `root` whose deletes send the descendants of `own` types through their own adapters first (its
 * snapshots, restores and probes are its own). A failed item carries one result per descendant
 * (ItemFailed.descendants): an app deleted beside a sibling that was refused is recorded done.
 * With `slot`, each HTTP call holds one of the operation's in-flight slots, as the chunk's own do.
 */
export function deletingThroughOwnAdapters(root: TargetAdapter, own: OwnAdapters, slot?: Slot): TargetAdapter {
  if (own.size === 0) return root;
  return {
    ...root,
    snapshot: (items, opts) => root.snapshot(items, opts),
    probe: (tenantId, opts) => root.probe(tenantId, opts),
    apply: (action, items, opts) =>
      DELETES.includes(action) ? deleteCascades(root, own, action, items, opts, slot) : root.apply(action, items, opts),
  };
}

/** One type's descendants through its adapter: one call each in its slot (HTTP), or all at once. */
function send(adapter: TargetAdapter, action: DestructiveAction, kids: AdapterItem[], opts: ApplyOptions, slot?: Slot) {
  if (!slot || adapter.kind !== 'http') return adapter.apply(action, kids, opts);
  return mapPool(
    kids,
    opts.concurrency,
    async (d) => (await slot(() => adapter.apply(action, [d], { ...opts, concurrency: 1 })))[0]!,
  );
}

async function deleteCascades(
  root: TargetAdapter,
  own: OwnAdapters,
  action: DestructiveAction,
  items: AdapterItem[],
  opts: ApplyOptions,
  slot: Slot | undefined,
): Promise<ItemResult[]> {
  const isOwn = (d: AdapterItem) => own.has(d.type);
  // Per item, the result of each of its descendants that went through its own adapter.
  const kidResults = items.map(() => new Map<AdapterItem, ItemResult>());
  const stopped = (k: number) => [...kidResults[k]!.values()].some((r) => !r.ok);
  const levels = [...new Set(items.flatMap((i) => (i.descendants ?? []).filter(isOwn).map((d) => d.depth ?? 1)))];
  for (const depth of levels.sort((a, b) => b - a)) {
    for (const type of own.keys()) {
      // Not sent for an item whose deeper descendants did not all go: its parent will not be deleted.
      const part = items.flatMap((i, k) =>
        stopped(k)
          ? []
          : (i.descendants ?? []).filter((d) => d.type === type && (d.depth ?? 1) === depth).map((d) => ({ k, d })),
      );
      if (part.length === 0) continue;
      const adapter = own.get(type)!;
      const res: ItemResult[] =
        adapter instanceof Error
          ? part.map(() => ({ ok: false, permanent: true, error: adapter.message, unapplied: true }))
          : await send(
              adapter,
              action,
              part.map((x) => x.d),
              opts,
              slot,
            );
      part.forEach(({ k, d }, j) => kidResults[k]!.set(d, res[j]!));
    }
  }
  // Ready: every descendant sent on its own was deleted; the parent goes with the rest of its cascade.
  const ready = items.flatMap((i, k) => (stopped(k) ? [] : [k]));
  const sent =
    ready.length === 0
      ? []
      : await root.apply(
          action,
          ready.map((k) => {
            const together = (items[k]!.descendants ?? []).filter((d) => !isOwn(d));
            const { descendants: _all, ...item } = items[k]!;
            return together.length ? { ...item, descendants: together } : item;
          }),
          opts,
        );
  const rootResult = new Map(ready.map((k, j) => [k, sent[j]!]));
  return items.map((item, k) =>
    kidResults[k]!.size ? combined(item, rootResult.get(k), kidResults[k]!) : rootResult.get(k)!,
  );
}

const applied = (r: ItemResult) => r.ok || (!isSkipped(r) && !(r.permanent && r.unapplied));

/**
 * The item's result with its descendants sent on their own: `own` is the parent's (undefined: not
 * sent, a descendant did not go). Whatever went out must not be lost: an item with a descendant
 * deleted is never "never sent" nor "changed nothing" (its mark stays, and a rollback restores it).
 */
function combined(item: AdapterItem, own: ItemResult | undefined, kids: Map<AdapterItem, ItemResult>): ItemResult {
  if (own?.ok) return own;
  const anyApplied = [...kids.values()].some(applied);
  // Its own delete certainly did not happen (never sent, or refused with nothing changed) while a
  // descendant's may have: said, so that a rollback restores that descendant and not the item,
  // which was never deleted (rollback-ledger.ts).
  const untouched = !own || isSkipped(own) || (own.permanent && own.unapplied === true);
  const unsent = untouched && anyApplied ? { ownUnsent: true as const } : {};
  const notYet = (error: string): ItemFailed => ({ ok: false, permanent: false, interrupted: true, error, ...unsent });
  if (own && isSkipped(own))
    return anyApplied ? notYet(`${item.resourceId} not deleted yet: halted after its cascade went`) : own;
  if (own?.interrupted) return own;
  const failed = [...kids].filter(([, r]) => !r.ok && !isSkipped(r)) as [AdapterItem, ItemFailed][];
  if (!own) {
    // Nothing was sent for it (halted first): handed back, as an item never sent.
    if (!anyApplied && failed.length === 0) return SKIPPED;
    // Stopped between calls, or a call's outcome is unknown: sent again later, with the same keys.
    if (failed.every(([, r]) => r.interrupted))
      return notYet(`${item.resourceId} not deleted yet: its cascade was stopped part way`);
  }
  const definite = failed.filter(([, r]) => !r.interrupted);
  const named = definite
    .slice(0, 3)
    .map(([d, r]) => `${d.resourceId} (${d.type}): ${r.error}`)
    .join('; ');
  const more = definite.length > 3 ? ` and ${definite.length - 3} more` : '';
  const error = own ? own.error : `${item.resourceId} not deleted: the delete of ${named}${more} failed`;
  const unapplied = !anyApplied && (own ? own.permanent && own.unapplied === true : true);
  // Retrying the parent cannot help while it, or one of its descendants, refuses for good.
  const permanent = own ? own.permanent : definite.some(([, r]) => r.permanent);
  return {
    ok: false,
    permanent,
    error,
    ...(own?.status === undefined ? {} : { status: own.status }),
    ...(unapplied ? { unapplied: true as const } : {}),
    ...unsent,
    // Those changed with the parent share its failure, and its uncertainty: an HTTP parent's call
    // that timed out may have taken them in the downstream's own cascade, so they keep their mark
    // (a rollback restores them). The others have their own.
    descendants: (item.descendants ?? []).map(
      (d): ItemResult =>
        kids.get(d) ?? {
          ok: false,
          permanent,
          error: `not deleted: ${error}`,
          ...(!own || (own.permanent && own.unapplied) ? { unapplied: true as const } : {}),
        },
    ),
  };
}

/**
 * A failed item's descendants, each with its own outcome (ItemFailed.descendants) for the ledger;
 * undefined when they share the item's. One never sent, or refused on every try, is `unapplied`:
 * it loses the mark its item's run set (a rollback must not restore what was never deleted).
 */
export function descendantOutcomes(kids: { seq: number }[], result: ItemResult): DescendantOutcome[] | undefined {
  const own = !result.ok && !isSkipped(result) ? result.descendants : undefined;
  if (!own || own.length !== kids.length) return undefined;
  return kids.map((d, j): DescendantOutcome => {
    const r = own[j]!;
    if (r.ok) return { seq: d.seq, state: 'done', error: null };
    if (isSkipped(r)) return { seq: d.seq, state: 'failed', error: 'not sent: halted first', unapplied: true };
    const error = r.error.slice(0, 500);
    return {
      seq: d.seq,
      state: 'failed',
      error,
      permanent: r.permanent,
      ...(r.permanent && r.unapplied ? { unapplied: true } : {}),
    };
  });
}
