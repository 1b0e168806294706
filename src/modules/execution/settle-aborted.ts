// What an aborted restore, purge or erasure left without an outcome, recorded. Such an operation
// ends at once (cancelled: it has no rollback to fall back on), and nothing sends its items again.
// A live run records what it did when it stops (chunk-restore.ts, for a restore's cascades), but
// two kinds of item were left as they were for good (a trial):
// - claimed by a run that stopped (`kill -9` of its worker): `claimed` forever, its calls' outcome
//   never written;
// - handed back `pending` with their write-ahead mark (a pause stopped them between retries, then
//   the abort came): they read "never run" while their call may have been applied.
// Once the claims' lease has run out, each such item is recorded failed, "outcome unknown", keeping
// its mark (a purge then refuses a restore of unknown outcome as restore_uncertain, and the registry
// views show a delete or purge of unknown outcome); an item claimed without a mark was never sent
// and goes back to pending.
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
import type { Ledger, Outcome } from './ledger.ts';
import type { RollbackLedger } from './rollback-ledger.ts';
import { outcomeUnknown } from './chunk-restore.ts';
import { randomUUID } from 'node:crypto';

export interface SettleDeps<Tx> {
  pool: Pick<pg.Pool, 'query'>;
  ledger: Pick<Ledger<Tx>, 'record'>;
  rollbacks: Pick<RollbackLedger, 'finish'>;
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
  const taken = await deps.pool.query<{ seq: number; marked: boolean; own_unsent: boolean; last_error: string | null }>(
    `UPDATE operation_items SET state = 'claimed', claim_token = $4, claimed_by = 'settle-aborted', claimed_at = now()
     WHERE operation_id = $1 AND seq >= $2 AND seq < $3 AND parent_seq IS NULL
       AND ((state = 'claimed' AND claimed_at < now() - make_interval(secs => $5))
            OR (state = 'pending' AND executed_seq IS NOT NULL))
     RETURNING seq, executed_seq IS NOT NULL AS marked, own_unsent, last_error`,
    [op.id, op.from_seq, op.to_seq, token, secs],
  );
  if (taken.rows.length) {
    const verb = op.action === 'erase' ? 'erasure' : op.action;
    const outcomes = taken.rows.map((i): Outcome =>
      i.marked
        ? {
            seq: i.seq,
            state: 'failed',
            error: outcomeUnknown(verb, i.last_error),
            permanent: true,
            ...(i.own_unsent ? { ownUnsent: true } : {}),
          }
        : // Claimed, never marked: nothing was sent for it.
          { seq: i.seq, state: 'pending', error: null },
    );
    const now = deps.clock();
    await deps.engine.apply(
      op.id,
      async (tx) => {
        await deps.ledger.record(tx, op.id, op.wave, token, outcomes, new Set(), now);
        return null;
      },
      SYSTEM,
      { report: true },
    );
  }
  // Settled once nothing of it is held (a live run's claims are recorded by that run) and no chunk
  // that read it running can claim anything any more.
  await deps.pool.query(
    `UPDATE operations o SET settled_at = now() WHERE o.id = $1 AND o.settled_at IS NULL
       AND o.finished_at < now() - make_interval(secs => $4)
       AND NOT EXISTS (SELECT 1 FROM operation_items i WHERE i.operation_id = $1 AND i.seq >= $2 AND i.seq < $3
                       AND i.parent_seq IS NULL AND (i.state = 'claimed' OR (i.state = 'pending' AND i.executed_seq IS NOT NULL)))`,
    [op.id, op.from_seq, op.to_seq, 2 * secs],
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
      error: outcomeUnknown('restore', null, 'the rollback was ended'),
      permanent: false,
    })),
  );
  await deps.pool.query(
    `UPDATE operations o SET settled_at = now() WHERE o.id = $1 AND o.settled_at IS NULL
       AND o.finished_at < now() - make_interval(secs => $2)
       AND NOT EXISTS (SELECT 1 FROM operation_items i WHERE i.operation_id = $1 AND i.state = 'restoring')`,
    [opId, 2 * secs],
  );
  return taken.rows.length;
}
