// A purge's parent waits for the children it holds in other chunks. Within a wave the ledger puts
// children before their parents (purges/resolve.ts insertPurgeItems), but the chunks of a wave run
// side by side: a site whose apps filled the chunk before its own was purged while that chunk still
// had an app's hard delete out, or after that call had failed, and the app was left deleted under a
// purged site, never restorable (family-chunks.test.ts). The children in the parent's own chunk are
// held by its calls' order (chunk-purge.ts holdParents); children the purge does not hold, by
// childrenHoldingBack (changed-since-plan.ts).
import type pg from 'pg';
import type { ChunkDeps } from './chunk.ts';
import type { ClaimedItem, Outcome } from './ledger.ts';

/**
 * How long a chunk that handed parents back to wait for their children waits before it runs again:
 * 0.5 s, doubling with each such run in a row up to 4 s. Each run claims and hands back every parent
 * still waiting: 1,000 sites waiting on one app whose call hung wrote 32,000 ledger rows in 10 s at
 * a fixed 0.5 s (a probe).
 */
export const childrenWaitMs = (waits = 0) => Math.min(4_000, 500 * 2 ** Math.min(waits, 3));

/** What a parent handed back to wait says (its last error) until it goes. */
export const WAITING = 'not sent yet: this purge waits for the outcome of its child';
/** …and once its purge was aborted (settle-aborted.ts), with the child's ID after it. */
export const ABORTED_WAITING = 'not sent: the purge was aborted while it waited for its child';

/**
 * A parent failed for good with nothing sent: its child will not be purged by this run (`why`). The
 * chunk's own order (chunk-purge.ts holdParents) and the look at other chunks say it alike.
 */
export function orphanRefusal(seq: number, child: string, why: string): Outcome {
  const error = `not purged: its child ${child} was not purged by this purge (${why}); a hard delete of the parent would leave it without a parent, never restorable. Purge it again once the child is purged`;
  return { seq, state: 'failed', error: error.slice(0, 500), permanent: true, unapplied: true };
}

/** A parent's child that another chunk has not purged: `failed` says why it never will be. */
export interface OutstandingChild {
  child: string;
  /** Null: its item is still to run (pending, or claimed by a chunk at work). */
  failed: string | null;
}

/**
 * Of `parents` (resources of a purge chunk), those with a registry child this purge holds that is
 * not purged yet and not among `inChunk`, each with such a child, preferring one that will never be
 * purged by this run: its item failed, or it is in a later wave than `wave` (a wave never waits for
 * a later one). The ledger is read by resource only when such a child exists: there is no index for
 * it, and in a purge whose chunks run in order no parent meets one.
 */
export async function childrenOutstanding(
  pool: Pick<pg.Pool, 'query'>,
  operationId: string,
  parents: readonly string[],
  inChunk: readonly string[],
  wave: number,
): Promise<Map<string, OutstandingChild>> {
  if (parents.length === 0) return new Map();
  const kids = await pool.query<{ id: string; parent_id: string }>(
    `SELECT ch.id, ch.parent_id FROM resources ch
     JOIN resource_locks lk ON lk.resource_id = ch.id AND lk.operation_id = $1
     WHERE ch.parent_id = ANY($2::text[]) AND ch.state <> 'purged' AND NOT (ch.id = ANY($3::text[]))`,
    [operationId, parents, inChunk],
  );
  if (kids.rows.length === 0) return new Map();
  const items = await pool.query<{ resource_id: string; state: string; wave: number }>(
    `SELECT resource_id, state, wave FROM operation_items
     WHERE operation_id = $1 AND resource_id = ANY($2::text[])`,
    [operationId, kids.rows.map((k) => k.id)],
  );
  const itemOf = new Map(items.rows.map((i) => [i.resource_id, i]));
  const out = new Map<string, OutstandingChild>();
  for (const k of kids.rows) {
    const i = itemOf.get(k.id);
    // Its outcome is recorded (and the registry row with it) after this look began.
    if (i?.state === 'done') continue;
    const failed = !i
      ? 'it is not an item of this purge'
      : i.state === 'failed'
        ? 'its item failed'
        : i.wave > wave
          ? `it goes in a later wave (${i.wave})`
          : null;
    const seen = out.get(k.parent_id);
    if (!seen || (seen.failed === null && failed !== null)) out.set(k.parent_id, { child: k.id, failed });
  }
  return out;
}

/**
 * Splits a purge chunk's fresh items (never sent) into parents whose child in another chunk will not
 * be purged (failed for good, nothing sent, naming it), parents whose child's chunk has still to
 * record it (handed back: `pending`, to run again once it has), and the rest. A parent in this chunk
 * of one handed back is handed back too, and so on up: a probe's org was purged while its proj, in
 * the same chunk, waited for a task in the chunk before (the failed ones' parents are holdParents').
 * An item an earlier run may have sent goes on as it is: it is sent again with its key.
 */
export async function awaitChildren<Tx>(
  deps: Pick<ChunkDeps<Tx>, 'childrenOutstanding' | 'parentsOf'>,
  opId: string,
  wave: number,
  items: ClaimedItem[],
  inChunk: readonly ClaimedItem[],
): Promise<{ held: Outcome[]; waiting: Outcome[]; part: ClaimedItem[] }> {
  const fresh = items.filter((i) => i.executedSeq === null);
  if (!deps.childrenOutstanding || fresh.length === 0) return { held: [], waiting: [], part: items };
  const out = await deps.childrenOutstanding(
    opId,
    fresh.map((i) => i.resourceId),
    inChunk.map((i) => i.resourceId),
    wave,
  );
  if (out.size === 0) return { held: [], waiting: [], part: items };
  const held: Outcome[] = [];
  const waiting: Outcome[] = [];
  let part = items.filter((i) => {
    const o = i.executedSeq === null ? out.get(i.resourceId) : undefined;
    if (!o) return true;
    // Said on the item, which the views list as pending: nothing else tells why it does not move.
    if (o.failed === null) waiting.push({ seq: i.seq, state: 'pending', error: `${WAITING} ${o.child} first` });
    else held.push(orphanRefusal(i.seq, o.child, o.failed));
    return false;
  });
  const resourceOf = new Map(items.map((i) => [i.seq, i.resourceId]));
  let wait = waiting.map((o) => resourceOf.get(o.seq)!);
  // Each round moves at least one item out of `part`, so it ends.
  while (wait.length && part.length && deps.parentsOf) {
    const childOf = new Map([...(await deps.parentsOf(wait))].map(([child, parent]) => [parent, child]));
    const up = part.filter((i) => childOf.has(i.resourceId));
    if (up.length === 0) break;
    waiting.push(
      ...up.map((i): Outcome => ({
        seq: i.seq,
        state: 'pending',
        error: `${WAITING} ${childOf.get(i.resourceId)} first`,
      })),
    );
    part = part.filter((i) => !childOf.has(i.resourceId));
    wait = up.map((i) => i.resourceId);
  }
  return { held, waiting, part };
}

/**
 * A chunk's items in rounds, children first: no item has a registry child in its own round or a
 * later one. A type that declares no parentType takes a parent of any type, its own included (a
 * folder under a folder, or under a site whose cascade does not reach it), and the chunk went type
 * by type in the ledger's order of cascade types: a parent was purged beside or before its child and
 * stayed purged when the child's call failed (same-type-family.test.ts). No family in the chunk: one
 * round, `items` as is.
 */
export function childrenFirst(
  items: ClaimedItem[],
  /** The registry parent of each chunk item that has one (ChunkDeps.parentsOf). */
  parents: ReadonlyMap<string, string>,
): ClaimedItem[][] {
  if (items.length < 2) return [items];
  const ids = new Set(items.map((i) => i.resourceId));
  const kids = new Map<string, number>();
  const parentOf = new Map<string, string>();
  for (const [child, parent] of parents) {
    if (!ids.has(child) || !ids.has(parent) || parent === child) continue;
    parentOf.set(child, parent);
    kids.set(parent, (kids.get(parent) ?? 0) + 1);
  }
  if (parentOf.size === 0) return [items];
  const rounds: ClaimedItem[][] = [];
  let left = items;
  while (left.length) {
    const round = left.filter((i) => !kids.get(i.resourceId));
    // A loop of parents (which no import makes) would never free one: they go last, together.
    if (round.length === 0) return [...rounds, left];
    for (const i of round) {
      const p = parentOf.get(i.resourceId);
      if (p !== undefined) kids.set(p, kids.get(p)! - 1);
    }
    rounds.push(round);
    const went = new Set(round);
    left = left.filter((i) => !went.has(i));
  }
  return rounds;
}
