// What rollbacks moved within each wave (operation_wave_moves), so that a rolling-back view counts
// its items from one row per wave and class instead of the ledger. The wave counters count forward
// outcomes (done, failed) only; a restore moves an item out of them. Invariant, for every wave and
// class of an operation's submitted items (descendants are not in the waves):
//
//   ledger count = forward count (pending: items − done − failed; done; failed; 0 otherwise) + n
//
// Each statement that moves items into, within or out of the restore states records its moves in
// itself (a data-modifying CTE), so the counts change in the transaction that changes the items.
// Without that, a rollback command of a 1M-item operation answered in 1.2–2.1 s: its view counted
// the ledger (`npm run bench -- control`, the rollback row).
import { RESTORE_ATTEMPTS } from './rollback-ledger.ts';

export const MOVE_CLASSES = [
  'pending',
  'done',
  'failed',
  'restoring',
  'restore_retry',
  'restored',
  'restore_failed',
] as const;
export type MoveClass = (typeof MOVE_CLASSES)[number];

/**
 * An item's class as the counters count it (of item row `t`): a claim is pending (the views count
 * claimed items as pending), and a failed restore with attempts left is restore_retry, which a
 * running rollback shows as restoring (shownState). A restore drill's hold is restoring, as the
 * ledger and the items route say: the drill records its moves (drill-store.ts).
 */
export const moveClass = (t: string) => `CASE
    WHEN ${t}.state IN ('pending', 'claimed') THEN 'pending'
    WHEN ${t}.state = 'restore_failed' AND NOT ${t}.permanent AND ${t}.restore_attempts < ${RESTORE_ATTEMPTS}
      THEN 'restore_retry'
    ELSE ${t}.state END`;

/** What the views, the operation list and the event stream call a class (restore_retry is never shown). */
export type ShownClass = Exclude<MoveClass, 'restore_retry'>;

/**
 * The one rule for restore_retry (a failed restore with attempts left): while the rollback runs it
 * is restoring (it will be tried again: counting it failed made the counts go up and down between
 * attempts), and once the rollback has ended it is restore_failed. `shownClassSql` is the same rule
 * for SQL over a `class` column; a test runs both over every class.
 */
export const shownClass = (c: MoveClass, rollbackRuns: boolean): ShownClass =>
  c === 'restore_retry' ? (rollbackRuns ? 'restoring' : 'restore_failed') : c;

/** shownClass in SQL: `cls` a class column, `rollbackRuns` a boolean expression. */
export const shownClassSql = (cls: string, rollbackRuns: string) =>
  `CASE WHEN ${cls} <> 'restore_retry' THEN ${cls} WHEN ${rollbackRuns} THEN 'restoring' ELSE 'restore_failed' END`;

/**
 * A CTE (named `name`) that adds to operation_wave_moves what `moved` moved: `moved` is a CTE of
 * (wave, parent_seq, from_class, to_class), one row per item changed by the statement. Counters
 * are taken in (wave, class) order, so two statements moving items of the same waves queue on
 * them instead of deadlocking. `op` is the operation's parameter ($1).
 */
export const recordMoves = (name: string, moved: string, op = '$1') => `${name} AS (
    INSERT INTO operation_wave_moves AS m (operation_id, wave, class, n)
    SELECT ${op}, d.wave, d.class, sum(d.n)::int FROM (
      SELECT wave, from_class AS class, -1 AS n FROM ${moved} WHERE parent_seq IS NULL AND from_class <> to_class
      UNION ALL
      SELECT wave, to_class, 1 FROM ${moved} WHERE parent_seq IS NULL AND from_class <> to_class) d
    GROUP BY d.wave, d.class HAVING sum(d.n) <> 0 ORDER BY d.wave, d.class
    ON CONFLICT (operation_id, wave, class) DO UPDATE SET n = m.n + excluded.n)`;

export interface WaveCounter {
  wave: number;
  items: number;
  done: number;
  failed: number;
}
export interface WaveMove {
  wave: number;
  class: MoveClass;
  n: number;
}

/** The view's per-wave counts of a rollback from the wave counters and the moves (no ledger read). */
export function countsFromMoves(
  waves: WaveCounter[],
  moves: WaveMove[],
  rollbackRuns: boolean,
): { wave: number; counts: Record<string, number> }[] {
  return waves.map((w) => {
    const all: Record<ShownClass, number> = {
      pending: w.items - w.done - w.failed,
      done: w.done,
      failed: w.failed,
      restoring: 0,
      restored: 0,
      restore_failed: 0,
    };
    for (const m of moves) if (m.wave === w.wave) all[shownClass(m.class, rollbackRuns)] += m.n;
    const counts: Record<string, number> = {};
    for (const [k, v] of Object.entries(all)) if (v !== 0) counts[k] = v;
    return { wave: w.wave, counts };
  });
}

/** The moves of an operation, as JSON (wave, class, n), for the queries that read its row. */
export const MOVES_JSON_SQL = (op: string) =>
  `coalesce((SELECT json_agg(json_build_object('wave', m.wave, 'class', m.class, 'n', m.n) ORDER BY m.wave, m.class)
     FROM operation_wave_moves m WHERE m.operation_id = ${op}), '[]')`;

/** The wave counters of operation `op` as JSON (WaveCounter[]), in wave order. */
export const COUNTERS_JSON_SQL = (op: string) =>
  `coalesce((SELECT json_agg(json_build_object('wave', w.wave, 'items', w.to_seq - w.from_seq, 'done', w.done,
       'failed', w.failed) ORDER BY w.wave) FROM operation_waves w WHERE w.operation_id = ${op}), '[]')`;
