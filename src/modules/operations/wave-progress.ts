// An operation's items per wave and ledger state, as GET /v1/operations/{id} shows them: from the
// per-wave counters where they tell, else from a count of the ledger shared by every reader.
import type { Operation } from '../../generated/prisma/client.ts';
import { LEDGER_COUNT_MEMO, memo } from '../../lib/memo.ts';
import type { Queryable } from '../../lib/sql.ts';
import { RESTORE_ATTEMPTS, shownState } from '../execution/rollback-ledger.ts';
import { countsFromMoves, type WaveCounter, type WaveMove } from '../execution/wave-moves.ts';

export type WaveProgress = { wave: number; counts: Record<string, number> }[];

/** progressOf's ledger counts, per operation version, for every reader in this process. */
const ledgerCounts = memo<WaveProgress>(LEDGER_COUNT_MEMO);

/**
 * Items per wave and ledger state. The per-wave counters (kept with the outcomes they count) answer
 * it in one row per wave, whatever the ledger's size — a GET polled during a 1M-item run must not
 * count the ledger. They count submitted items by done/failed; the rest is pending (claimed items,
 * in flight, included). A rollback's restores and a restore drill's hold are the wave's moves (execution/wave-moves.ts), kept
 * in the statements that make them. The ledger is counted only where those cannot tell: cascaded
 * descendants (itemCount is larger than the waves).
 */
export async function progressOf(
  db: Queryable,
  op: Pick<Operation, 'id' | 'state' | 'itemCount' | 'updatedAt'>,
  waves: WaveCounter[],
  moves: WaveMove[] | null,
): Promise<WaveProgress> {
  const submitted = waves.reduce((n, w) => n + w.items, 0);
  if (waves.length && submitted === op.itemCount)
    return countsFromMoves(waves, moves ?? [], op.state === 'rolling_back');
  // This counts the whole ledger (up to 1M rows and more with descendants): per GET, 500 GETs a
  // second of a rolling-back operation kept a core of PostgreSQL scanning and slowed the rollback
  // itself (npm run bench -- control). Shared for a second per process, longer when a count takes
  // long (costFactor), and readers get the last count while a new one runs (staleMs) instead of
  // waiting ~0.6 s for it; a change of state (or any other change to the row) is a new key, so what
  // a view says about the operation's state is never older than its row.
  return ledgerCounts.get(`${op.id}|${op.state}|${op.updatedAt.toISOString()}`, async () => {
    // A failed restore that the running rollback will try again counts as restoring, not
    // restore_failed (the counts went up and down between attempts).
    const rows = await db.query<{ wave: number; state: string; n: number }>(
      `SELECT wave, ${shownState('$2', '$3')} AS state,
         count(*)::int AS n
       FROM operation_items WHERE operation_id = $1 GROUP BY 1, 2`,
      [op.id, op.state === 'rolling_back', RESTORE_ATTEMPTS],
    );
    const byWave = new Map<number, Record<string, number>>();
    for (const r of rows.rows) byWave.set(r.wave, { ...byWave.get(r.wave), [r.state]: r.n });
    return [...byWave.entries()].sort((a, b) => a[0] - b[0]).map(([wave, counts]) => ({ wave, counts }));
  });
}
