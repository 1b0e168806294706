// What an aborted restore, purge or erasure left without an outcome, recorded. Such an operation
// ends at once (cancelled: it has no rollback to fall back on), and nothing sends its items again.
// A live run records what it did when it stops (chunk-restore.ts, for a restore's cascades), but
// two kinds of item were left as they were for good (a trial):
// - claimed by a run that stopped (`kill -9` of its worker): `claimed` forever, its calls' outcome
//   never written;
// - handed back `pending` with their write-ahead mark (a pause stopped them between retries, then
//   the abort came): they read "never run" while their call may have been applied.
// Once the claims' lease has run out, each such item is recorded failed, "outcome unknown", keeping
// its mark (a purge then leaves out a restore of unknown outcome as restore_uncertain, and the
// registry views show a delete or purge of unknown outcome); an item claimed without a mark was
// never sent and goes back to pending. A restore is recorded as far as it is known to have got
// (settledOutcome): what came back is done, so that a later restore takes what did not.
//
// A rollback ended by an operator (abort with endRollback: rollback_incomplete) after its run was
// killed left that run's items `restoring` for good, and its view counting them as being restored.
// They are recorded as failed restores of unknown outcome (a rollback started again sends them
// again, under the same keys).
//
// The reconciler runs this; an operation is looked at until nothing of it is held or unsettled
// (`settled_at`, cleared by every transition), and at least two leases after it ended: a chunk
// that read the operation running just before the abort may still claim (and hand back) its items.
import type pg from 'pg';
import type { Engine } from './engine.ts';
import type { OperationRecord } from './state.ts';
import type { OperationKind } from '../operations/lifecycle-types.ts';
import type { DescendantOutcome, Ledger, Outcome } from './ledger.ts';
import type { RollbackLedger } from './rollback-ledger.ts';
import { outcomeUnknown, PARENT_BACK } from './chunk-restore.ts';
import { ABORTED_WAITING, WAITING } from './purge-children.ts';
import { isExternal } from '../restores/history.ts';
import { randomUUID } from 'node:crypto';

export interface SettleDeps<Tx> {
  pool: Pick<pg.Pool, 'query'>;
  ledger: Pick<Ledger<Tx>, 'record'>;
  rollbacks: Pick<RollbackLedger, 'finish'>;
  /** What a done outcome means for the registry row (purges/retention.ts registryFollows). */
  registryFollows?: (tx: Tx, op: Pick<OperationRecord, 'id' | 'action' | 'mode'>, doneSeqs: number[]) => Promise<void>;
  engine: Pick<Engine<Tx>, 'apply'>;
  leaseMs: number;
  clock(): number;
}

const SYSTEM = { name: 'system' };

/** Settles every aborted operation that needs it; returns how many items it recorded. */
export async function settleAborted<Tx>(deps: SettleDeps<Tx>): Promise<number> {
  const ops = await deps.pool.query<{
    id: string;
    state: string;
    action: string;
    wave: number | null;
    from_seq: number;
    to_seq: number;
  }>(
    `SELECT o.id, o.state, o.action, w.wave, w.from_seq, w.to_seq FROM operations o
     LEFT JOIN operation_waves w ON w.operation_id = o.id AND w.wave = o.current_wave
     WHERE o.state IN ('cancelled', 'rollback_incomplete') AND o.settled_at IS NULL AND o.started_at IS NOT NULL`,
  );
  let settled = 0;
  for (const { wave, ...op } of ops.rows) {
    if (op.state === 'rollback_incomplete') settled += await settleRollback(deps, op.id);
    else if (wave !== null) settled += await settleOne(deps, { ...op, wave });
  }
  return settled;
}

async function settleOne<Tx>(
  deps: SettleDeps<Tx>,
  op: { id: string; action: string; wave: number; from_seq: number; to_seq: number },
): Promise<number> {
  const token = randomUUID();
  const secs = deps.leaseMs / 1000;
  // Taken over under a token of its own, as a claim whose lease ran out is (ledger.ts claim): a run
  // that wakes up later can record nothing of them.
  const taken = await deps.pool.query<{
    seq: number;
    was: string;
    marked: boolean;
    own_unsent: boolean;
    last_error: string | null;
  }>(
    `UPDATE operation_items i SET state = 'claimed', claim_token = $4, claimed_by = 'settle-aborted', claimed_at = now()
     FROM (SELECT seq, state FROM operation_items
           WHERE operation_id = $1 AND seq >= $2 AND seq < $3 AND parent_seq IS NULL
             AND ((state = 'claimed' AND claimed_at < now() - make_interval(secs => $5))
                  OR (state = 'pending' AND executed_seq IS NOT NULL))
           FOR UPDATE) w
     WHERE i.operation_id = $1 AND i.seq = w.seq
     RETURNING i.seq, w.state AS was, i.executed_seq IS NOT NULL AS marked, i.own_unsent, i.last_error`,
    [op.id, op.from_seq, op.to_seq, token, secs],
  );
  if (taken.rows.length) {
    const seqs = taken.rows.map((i) => i.seq);
    const restore = op.action === 'restore';
    const kids = restore ? await kidStates(deps.pool, op.id, seqs) : new Map<number, Kid[]>();
    const back = restore ? await registryShowsBack(deps.pool, op.id, seqs) : new Set<number>();
    const outcomes = taken.rows.map((i) => settledOutcome(op.action, i, kids.get(i.seq) ?? [], back));
    const now = deps.clock();
    await deps.engine.apply(
      op.id,
      async (tx) => {
        // What the registry row says of a restore that came back (its retention ends), as a chunk's record does.
        const follow = async () => {
          const landed = outcomes.filter((o) => o.state === 'done' || o.descendants?.some((d) => d.state === 'done'));
          if (landed.length && deps.registryFollows)
            await deps.registryFollows(
              tx,
              { id: op.id, action: op.action as OperationKind, mode: 'soft' },
              landed.map((o) => o.seq),
            );
        };
        await deps.ledger.record(tx, op.id, op.wave, token, outcomes, new Set(), now, follow);
        return null;
      },
      SYSTEM,
      { report: true },
    );
  }
  // A purge's parent handed back to wait for a child says so on its item: nothing sends it now, and
  // "waits for" read as still to come on a cancelled purge (a probe).
  await deps.pool.query(
    `UPDATE operation_items SET last_error = $4 || substr(last_error, length($5) + 1)
     WHERE operation_id = $1 AND seq >= $2 AND seq < $3 AND state = 'pending' AND starts_with(last_error, $5)`,
    [op.id, op.from_seq, op.to_seq, ABORTED_WAITING, WAITING],
  );
  await closeRound(
    deps,
    op.id,
    `i.seq >= $3 AND i.seq < $4 AND i.parent_seq IS NULL AND (i.state = 'claimed' OR (i.state = 'pending' AND i.executed_seq IS NOT NULL))`,
    `i.state = 'claimed'`,
    [op.from_seq, op.to_seq],
  );
  return taken.rows.length;
}

/** The restores an ended rollback's stopped run held, recorded failed with their outcome unknown. */
async function settleRollback<Tx>(deps: SettleDeps<Tx>, opId: string): Promise<number> {
  const token = randomUUID();
  const secs = deps.leaseMs / 1000;
  // The held items, under a token of this run's (nothing changes class: the counts stay as they are).
  const taken = await deps.pool.query<{ seq: number; last_error: string | null }>(
    `UPDATE operation_items SET claim_token = $2, claimed_at = now()
     WHERE operation_id = $1 AND state = 'restoring' AND claimed_at < now() - make_interval(secs => $3)
     RETURNING seq, last_error`,
    [opId, token, secs],
  );
  await deps.rollbacks.finish(
    opId,
    token,
    taken.rows.map((i) => ({
      seq: i.seq,
      ok: false,
      error: outcomeUnknown('restore', null, 'the rollback was ended', false),
      permanent: false,
    })),
  );
  await closeRound(deps, opId, `i.state = 'restoring'`, 'true');
  return taken.rows.length;
}

/**
 * What an item left without an outcome is recorded as. Never marked: nothing was sent (pending). A
 * restore that came back itself (PARENT_BACK, or the registry shows it), or some of whose
 * descendants did (recorded done when it was handed back, chunk-restore.ts, or shown by the
 * registry), is done, saying how many of its descendants did not. The rest fail with their outcome
 * unknown, keeping their marks: claimed by a stopped run, their call may or may not have been sent;
 * handed back, it was.
 */
function settledOutcome(
  action: string,
  i: { seq: number; was: string; marked: boolean; own_unsent: boolean; last_error: string | null },
  kids: Kid[],
  /** Restores of the registry adapter that the registry shows took effect (registryShowsBack). */
  registryBack: ReadonlySet<number>,
): Outcome {
  if (!i.marked) return { seq: i.seq, state: 'pending', error: null };
  const verb = action === 'erase' ? 'erasure' : action;
  const sent = i.was === 'pending';
  const unknown = outcomeUnknown(verb, i.last_error === PARENT_BACK ? null : i.last_error, undefined, sent);
  const ownBack = i.last_error === PARENT_BACK || registryBack.has(i.seq);
  if (action === 'restore' && kids.length === 0 && ownBack) return { seq: i.seq, state: 'done', error: null };
  if (action !== 'restore' || kids.length === 0)
    return {
      seq: i.seq,
      state: 'failed',
      error: unknown,
      permanent: true,
      ...(i.own_unsent ? { ownUnsent: true } : {}),
    };
  const back = new Set(kids.filter((k) => k.state === 'done' || registryBack.has(k.seq)).map((k) => k.seq));
  const descendants = kids.map((k): DescendantOutcome =>
    back.has(k.seq)
      ? { seq: k.seq, state: 'done', error: null }
      : { seq: k.seq, state: 'failed', error: outcomeUnknown(verb, null, undefined, false), permanent: true },
  );
  // Descendants are sent only once their parent came back.
  if (back.size === 0 && !ownBack) return { seq: i.seq, state: 'failed', error: unknown, permanent: true, descendants };
  const missing = kids.length - back.size;
  return {
    seq: i.seq,
    state: 'done',
    ...(missing ? { verdict: 'failed' as const } : {}),
    error: missing
      ? `restored, but ${missing} of the ${kids.length} it took were not (the operation was aborted; their outcome is unknown)`
      : null,
    descendants,
  };
}

interface Kid {
  seq: number;
  state: string;
}

/** The descendants of these items with their ledger state, by parent seq. */
async function kidStates(pool: Pick<pg.Pool, 'query'>, opId: string, seqs: number[]): Promise<Map<number, Kid[]>> {
  const r = await pool.query<{ seq: number; parent_seq: number; state: string }>(
    `SELECT seq, parent_seq, state FROM operation_items WHERE operation_id = $1 AND parent_seq = ANY($2::int[]) ORDER BY seq`,
    [opId, seqs],
  );
  const out = new Map<number, Kid[]>();
  for (const k of r.rows) out.set(k.parent_seq, [...(out.get(k.parent_seq) ?? []), { seq: k.seq, state: k.state }]);
  return out;
}

/**
 * Of these restore items and their descendants, those of a registry-adapter type whose row the
 * registry shows back: active, and written since the restore's own snapshot of it was taken (just
 * before its call). The registry adapter restores in the registry's own transaction, so the row is
 * what happened: a `kill -9` after a site's restore committed left the site active and its item of
 * unknown outcome, and every later restore of its apps refused them parent_deleted (a trial).
 */
async function registryShowsBack(pool: Pick<pg.Pool, 'query'>, opId: string, seqs: number[]): Promise<Set<number>> {
  const r = await pool.query<{ seq: number }>(
    `SELECT i.seq FROM operation_items i
     JOIN resources r ON r.id = i.resource_id JOIN resource_types t ON t.name = r.type
     JOIN snapshots s ON s.id = i.snapshot_id
     WHERE i.operation_id = $1 AND (i.seq = ANY($2::int[]) OR i.parent_seq = ANY($2::int[]))
       AND NOT ${isExternal('t')} AND r.state = 'active' AND r.updated_at >= s.created_at`,
    [opId, seqs],
  );
  return new Set(r.rows.map((x) => x.seq));
}

/**
 * The end of a round, in one statement over the items still open (`open`, SQL of items `i`, its
 * parameters from $3 on): those a run still holds (`held`, of those) are noted on the row
 * (`restore_wait.held`, settling: the views show it as `waiting: claims` until the first lease
 * ends), and the note is cleared once none is; with none open, and no chunk that read the operation
 * running able to claim anything any more (two leases after it ended), it is settled.
 */
async function closeRound<Tx>(
  deps: SettleDeps<Tx>,
  opId: string,
  open: string,
  held: string,
  params: unknown[] = [],
): Promise<void> {
  await deps.pool.query(
    `WITH i AS (
       SELECT i.claimed_at, (${held}) AS held FROM operation_items i WHERE i.operation_id = $1 AND ${open}
     ), h AS (
       SELECT count(*) AS open, count(*) FILTER (WHERE held)::int AS items, min(claimed_at) FILTER (WHERE held) AS since FROM i
     ), note AS (
       SELECT h.open, CASE WHEN h.items = 0 THEN NULL ELSE jsonb_build_object('held', jsonb_build_object('items', h.items,
         'since', h.since, 'until', h.since + make_interval(secs => $2), 'notedAt', now(), 'settling', true)) END AS w
       FROM h
     )
     UPDATE operations o SET
       restore_wait = CASE WHEN note.w IS NOT NULL OR (o.restore_wait->'held'->>'settling')::boolean IS TRUE
                           THEN note.w ELSE o.restore_wait END,
       settled_at = CASE WHEN note.open = 0 AND o.finished_at < now() - make_interval(secs => 2 * $2)
                         THEN now() ELSE o.settled_at END
     FROM note WHERE o.id = $1`,
    [opId, deps.leaseMs / 1000, ...params],
  );
}
