// One batch of a rollback: verify every snapshot, then restore submitted items newest first through
// the operation's adapter, then the descendants their cascades took, shallowest first, each through
// its own type's adapter (unless the parent's adapter brought them back in the same transaction:
// the registry's, for descendants kept in the registry too — an HTTP app under a registry site is
// restored over HTTP, cascade-own.ts).
//
// An item whose snapshot fails verification (snapshot_corrupt, erased, no_snapshot) is never
// restored: it fails for good, saying why, and so do the descendants of a parent that did not
// come back — nothing is restored under a parent that is still deleted.
import {
  afterAttempts,
  idempotencyKeyFor,
  isSkipped,
  type AdapterItem,
  type DestructiveAction,
  type ItemResult,
  type TargetAdapter,
} from '../adapters/index.ts';
import { rollbackOrder } from '../operations/rollback-plan.ts';
import type { SnapshotRead } from '../snapshots/store.ts';
import type { AdapterCache } from './adapters-cache.ts';
import { changesWith } from './cascade-own.ts';
import type { RestoreCandidate, RestoreResult } from './rollback-ledger.ts';

export interface BatchContext {
  opId: string;
  targetType: string;
  concurrency: number;
  adapters: Pick<AdapterCache, 'get'>;
  readSnapshots: (ids: number[]) => Promise<Map<number, SnapshotRead>>;
  shouldContinue: () => boolean;
  /**
   * The registry parent of each of these resources that has one: a descendant under another one
   * (a chain deeper than a level) is restored only once that one is back. Without it, only the
   * submitted item's failure holds its descendants.
   */
  parentsOf?: (resourceIds: string[]) => Promise<Map<string, string>>;
  /** The keys to send (default: the item's own restore key; a restore drill sends its own). */
  idempotencyKey?: (item: AdapterItem, action: DestructiveAction) => string;
}

const failure = (seq: number, error: string, permanent: boolean): RestoreResult => ({
  seq,
  ok: false,
  error: error.slice(0, 500),
  permanent,
});
/** Failed for good without a call: nothing was sent for it (see RestoreResult.unapplied). */
const unsentFailure = (seq: number, error: string): RestoreResult => ({
  ...failure(seq, error, true),
  unapplied: true,
});

/**
 * What a restore this run never sent (it stopped first) keeps as its last error until it is sent.
 * The adapters' word for it is "halted", which read as a failed restore in the items of a rollback
 * that a shutdown interrupted (no attempt is counted for it, and the rollback sends it again).
 */
export const RESTORE_NOT_SENT =
  'restore not sent: the run stopped before its call (a shutdown, the rollback ended, or its job passed to another worker); nothing was applied, and a running rollback sends it again';
const notSent = (seq: number): RestoreResult => ({ ...failure(seq, RESTORE_NOT_SENT, false), skipped: true });

// Skipped (never sent) and interrupted (sent, outcome unknown) are told apart for a restore
// operation's chunk, which hands such items back; a rollback retries them like any failure.
const fromItem = (seq: number, x: ItemResult): RestoreResult => {
  if (x.ok) return { seq, ok: true, error: null, permanent: false };
  if (isSkipped(x)) return notSent(seq);
  return {
    ...failure(seq, x.error, x.permanent),
    ...(x.interrupted ? { interrupted: true as const } : {}),
    ...(x.permanent && x.unapplied ? { unapplied: true as const } : {}),
    ...(x.attempts ? { attempts: x.attempts } : {}),
  };
};

/**
 * A failed restore's error as the item keeps it: it replaces the delete's, so it says it is the
 * restore's, and how many restore requests were sent in all (every round's, under the item's one
 * restore key). It said "HTTP 500 … (after 3 attempts)", the last round's, on items whose soft
 * delete had gone out twice and whose restore 15 times (a trial read it as the delete's).
 */
const counted = (r: RestoreResult, before = 0): RestoreResult =>
  r.attempts && r.error ? { ...r, error: afterAttempts(r.error, before + r.attempts, 'restore') } : r;

/**
 * A rollback's failed restore whose requests went out, as the item keeps it: its outcome is unknown
 * (a 5xx may come after the owning system applied it; a run stopped between retries has no answer),
 * so the resource may be live again, and the error says so. It read "HTTP 500 … (after 6 restore
 * requests)" or "stopped before retry…" while purges and the registry view (restores/history.ts,
 * UNDO_UNCERTAIN) already took it for possibly back. A refusal that changed nothing (unapplied), a
 * restore never sent and one not tried for its parent's sake keep their own words.
 */
export function saysUncertain(r: RestoreResult): RestoreResult {
  if (r.ok || r.skipped || r.unapplied || !r.error || !(r.interrupted || (r.attempts ?? 0) > 0)) return r;
  const how = r.interrupted ? 'the rollback stopped before its answer' : 'did not succeed';
  return {
    ...r,
    error:
      `outcome unknown: its restore went out and ${how} (${r.error}); it may have been applied, so the resource may be live again: a rollback sends it again to settle it`.slice(
        0,
        500,
      ),
  };
}

export async function restoreBatch(c: BatchContext, picked: RestoreCandidate[]): Promise<RestoreResult[]> {
  const rows = rollbackOrder(picked);
  const results = new Map<number, RestoreResult>();
  const data = new Map<number, unknown>();
  const reads = await c.readSnapshots(rows.flatMap((r) => (r.snapshotId === null ? [] : [r.snapshotId])));
  for (const r of rows) {
    const read: SnapshotRead =
      r.snapshotId === null
        ? { ok: false, reason: 'no_snapshot', detail: `${r.resourceId} has no snapshot in the ledger` }
        : reads.get(r.snapshotId)!;
    if (read.ok) data.set(r.seq, read.data);
    else results.set(r.seq, unsentFailure(r.seq, `${read.reason}: ${read.detail}`));
  }

  const adapters = new Map<string, Promise<TargetAdapter | Error>>();
  const adapterOf = (type: string) => {
    let a = adapters.get(type);
    if (!a) {
      // A type whose adapter cannot be built fails each restore with the reason, like a 5xx would.
      a = c.adapters.get(type).then(
        (x) => x.adapter,
        (err: unknown) => new Error(`adapter for type ${type} unavailable: ${(err as Error).message}`),
      );
      adapters.set(type, a);
    }
    return a;
  };
  const item = (r: RestoreCandidate): AdapterItem => ({
    operationId: c.opId,
    resourceId: r.resourceId,
    tenantId: r.tenantId,
    type: r.type ?? c.targetType,
  });
  const restore = async (adapter: TargetAdapter | Error, items: AdapterItem[], snaps: RestoreCandidate[]) =>
    adapter instanceof Error
      ? items.map((): ItemResult => ({ ok: false, permanent: false, error: adapter.message }))
      : adapter.apply('restore', items, {
          idempotencyKey: c.idempotencyKey ?? idempotencyKeyFor,
          shouldContinue: c.shouldContinue,
          concurrency: c.concurrency,
          snapshots: new Map(snaps.map((r) => [r.resourceId, data.get(r.seq)])),
        });

  // Submitted items first, each with the descendants its adapter restores in the same transaction;
  // type by type (a restore operation's items may be of several types).
  const roots = rows.filter((r) => r.parentSeq === null);
  const kidsOf = (seq: number) => rows.filter((r) => r.parentSeq === seq);
  const typeOf = (r: RestoreCandidate) => r.type ?? c.targetType;
  // Submitted items under one another (a folder listed with the folders under it) go parents first,
  // whatever order they were deleted in, and none goes under one that did not come back.
  // The registry parents the two orders below go by, asked once per batch: of the submitted items
  // (when there are several) and of the descendants deeper than a submitted item's children.
  const asked = rows.filter((r) => r.depth > 1 || (r.parentSeq === null && roots.length > 1));
  const parentOf =
    asked.length && c.parentsOf ? await c.parentsOf(asked.map((r) => r.resourceId)) : new Map<string, string>();
  const { levels, held: rootHeld } = rootLevels(roots, parentOf);
  for (const [level, type] of levels.flatMap((l, k) => [...new Set(l.map(typeOf))].map((t) => [k, t] as const))) {
    const ready = levels[level]!.filter((r) => typeOf(r) === type && data.has(r.seq) && !rootHeld(r, results));
    if (!ready.length) continue;
    const adapter = await adapterOf(type);
    // Kid types the parent's own transaction restores (registry in registry); the others come after.
    const kidTypes = [...new Set(ready.flatMap((r) => kidsOf(r.seq).map(typeOf)))];
    const withParent = new Set<string>();
    if (!(adapter instanceof Error) && adapter.cascade === 'same_transaction')
      for (const t of kidTypes) if (changesWith(adapter, await adapterOf(t))) withParent.add(t);
    const attached = ready.map((r) => kidsOf(r.seq).filter((d) => data.has(d.seq) && withParent.has(typeOf(d))));
    const items = ready.map((r, k) => ({
      ...item(r),
      ...(attached[k]!.length ? { descendants: attached[k]!.map(item) } : {}),
    }));
    const res = await restore(adapter, items, [...ready, ...attached.flat()]);
    ready.forEach((r, k) => {
      const x = res[k]!;
      results.set(r.seq, fromItem(r.seq, x));
      if (x.ok) attached[k]!.forEach((d, j) => results.set(d.seq, fromItem(d.seq, x.descendants?.[j] ?? x)));
    });
  }
  for (const root of roots) {
    const own = results.get(root.seq)!;
    if (own.ok) continue;
    // Under a parent never sent, nothing was sent either: no attempt is counted for them.
    for (const d of kidsOf(root.seq))
      if (!results.has(d.seq))
        results.set(
          d.seq,
          own.skipped
            ? notSent(d.seq)
            : failure(d.seq, `not restored: ${root.resourceId} was not (${own.error})`, own.permanent),
        );
  }

  // The rest: descendants the owning system cascaded itself, and those whose parent came back in
  // an earlier batch. Shallowest first: a child is back before its own children.
  const rest = rows.filter((r) => !results.has(r.seq));
  const held = heldByParents(rows, parentOf);
  for (const depth of [...new Set(rest.map((r) => r.depth))].sort((a, b) => a - b)) {
    // Under a descendant that did not come back (a shallower level's), nothing is sent: a probe's
    // d_3 and d_4 came back live under d_2, whose restore was refused.
    const level = rest.filter((r) => r.depth === depth && !held(r, results));
    for (const type of [...new Set(level.map((r) => r.type ?? c.targetType))]) {
      const part = level.filter((r) => (r.type ?? c.targetType) === type);
      const res = await restore(await adapterOf(type), part.map(item), part);
      part.forEach((r, k) => results.set(r.seq, fromItem(r.seq, res[k]!)));
    }
  }
  return rows.map((r) => counted(results.get(r.seq)!, r.restoreCalls));
}

/**
 * Whether `r`'s registry parent is another candidate of the batch that did not come back (then its
 * result is set here, as a submitted item's children's is: not sent under a parent never sent).
 */
function heldByParents(rows: RestoreCandidate[], parentOf: ReadonlyMap<string, string>) {
  const candidate = new Map(rows.map((r) => [r.resourceId, r]));
  return (r: RestoreCandidate, results: Map<number, RestoreResult>) => {
    const p = candidate.get(parentOf.get(r.resourceId) ?? '');
    const own = p && p.seq !== r.seq ? results.get(p.seq) : undefined;
    if (!own || own.ok) return false;
    results.set(r.seq, parentNotBack(r.seq, p!, own));
    return true;
  };
}

/**
 * `roots` in levels, parents first: a root's registry parent that is another root of the batch is in
 * an earlier level. `held` fails (as heldByParents) a root whose parent root did not come back.
 */
function rootLevels(roots: RestoreCandidate[], parentOf: ReadonlyMap<string, string>) {
  const byId = new Map(roots.map((r) => [r.resourceId, r]));
  const up = new Map<number, RestoreCandidate>();
  for (const r of roots) {
    const p = byId.get(parentOf.get(r.resourceId) ?? '');
    if (p && p.seq !== r.seq) up.set(r.seq, p);
  }
  const levels: RestoreCandidate[][] = [];
  let left = roots;
  while (left.length) {
    const waiting = new Set(left.map((r) => r.seq));
    const level = left.filter((r) => !waiting.has(up.get(r.seq)?.seq ?? -1));
    // A loop of parents (the import refuses one) goes last, together.
    if (level.length === 0) {
      levels.push(left);
      break;
    }
    levels.push(level);
    const went = new Set(level);
    left = left.filter((r) => !went.has(r));
  }
  const held = (r: RestoreCandidate, results: Map<number, RestoreResult>) => {
    const p = up.get(r.seq);
    const own = p ? results.get(p.seq) : undefined;
    if (!own || own.ok) return false;
    results.set(r.seq, parentNotBack(r.seq, p!, own));
    return true;
  };
  return { levels: levels.length ? levels : [roots], held };
}

/** Not sent under a parent that did not come back (never sent itself: neither is this). */
const parentNotBack = (seq: number, p: RestoreCandidate, own: RestoreResult): RestoreResult =>
  own.skipped ? notSent(seq) : failure(seq, `not restored: ${p.resourceId} was not (${own.error})`, own.permanent);
