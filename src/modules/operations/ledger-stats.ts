// The planner's statistics of the item ledger, brought up to date after a plan wrote a large one.
// A plan writes its whole ledger in one transaction, usually long after the table's last ANALYZE:
// the statistics then say the new operation has next to no rows, and statements that join a few of
// its items to a list of seqs were planned as a scan of every row of the operation. A rollback's
// record of 200 restores read all 1.2M rows, 0.3–0.9 s per batch, until autovacuum analysed the
// table about a minute later (EXPLAIN ANALYZE in `npm run bench -- control`; a canary that fails
// rolls back within seconds of the start). Only operation_id's statistics (and the table's size):
// the rest of a ledger just planned is what no execution looks like (every item pending, no
// snapshot), and with those statistics the rollback's history read hashed every snapshot link of
// the table per batch instead of probing the batch's (0.25–0.35 s per batch). ANALYZE samples a
// fixed number of rows (~0.1–0.3 s whatever the table's size), takes no lock that writers wait for,
// and runs after the commit, in the background: the plan's answer does not wait for it.
import type pg from 'pg';

/** Plans of at least this many items (descendants included) analyse the ledger after they commit. */
export const ANALYZE_AFTER_ITEMS = 10_000;

export interface LedgerStats {
  /** After a committed plan of `items` items: analyses the ledger when it is large enough. */
  planned(items: number): void;
  /** Resolves when no ANALYZE is running or due (tests, shutdown). */
  idle(): Promise<void>;
}

/**
 * One ANALYZE at a time per process; plans that commit while one runs share the one after it (the
 * rows they wrote may not be in its sample).
 */
export function ledgerStats(pool: Pick<pg.Pool, 'query'>, log: { warn(o: object, msg: string): void }): LedgerStats {
  let running: Promise<void> | null = null;
  let again = false;
  const run = (): Promise<void> =>
    pool.query('ANALYZE operation_items (operation_id)').then(
      () => undefined,
      // Not the plan's failure: the statistics catch up when autovacuum analyses the table. A role
      // that does not own the table gets a warning from PostgreSQL and nothing is analysed.
      (err: unknown) => log.warn({ err }, 'could not analyse operation_items after a large plan'),
    );
  const loop = async () => {
    do {
      again = false;
      await run();
    } while (again);
    running = null;
  };
  return {
    planned(items) {
      if (items < ANALYZE_AFTER_ITEMS) return;
      if (running) again = true;
      else running = loop();
    },
    idle: async () => {
      while (running) await running;
    },
  };
}
