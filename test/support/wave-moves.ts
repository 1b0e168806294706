// The invariant of operation_wave_moves (src/modules/execution/wave-moves.ts), checked against the
// ledger itself: for every operation, wave and class of submitted items, the ledger's count equals
// the wave counters' forward count plus the moves (for an operation with cascaded descendants, the
// restore classes only). Every execution harness checks it when it closes,
// so a path that moves items into or out of a restore state without recording it fails the test
// file that took it, whichever that is.
import { query } from './seed.ts';

export interface MoveMismatch {
  operationId: string;
  state: string;
  wave: number;
  class: string;
  ledger: number;
  counted: number;
}

export async function waveMoveMismatches(databaseUrl: string, operationId?: string): Promise<MoveMismatch[]> {
  return query<MoveMismatch>(
    databaseUrl,
    `WITH l AS (
       SELECT operation_id, wave, CASE
           WHEN state IN ('pending', 'claimed') THEN 'pending'
           WHEN state = 'restore_failed' AND NOT permanent AND restore_attempts < 5 THEN 'restore_retry'
           ELSE state END AS class, count(*)::int AS n
       FROM operation_items WHERE parent_seq IS NULL AND ($1::text IS NULL OR operation_id = $1)
       GROUP BY 1, 2, 3
     ), f AS (
       SELECT w.operation_id, w.wave, v.class, v.n FROM operation_waves w,
         LATERAL (VALUES ('pending', w.to_seq - w.from_seq - w.done - w.failed), ('done', w.done), ('failed', w.failed)) v(class, n)
       WHERE $1::text IS NULL OR w.operation_id = $1
     ), counted AS (
       SELECT operation_id, wave, class, sum(n)::int AS n FROM (
         SELECT * FROM f UNION ALL
         SELECT operation_id, wave, class, n FROM operation_wave_moves WHERE $1::text IS NULL OR operation_id = $1) x
       GROUP BY 1, 2, 3
     )
     SELECT coalesce(l.operation_id, c.operation_id) AS "operationId", o.state,
            coalesce(l.wave, c.wave) AS wave, coalesce(l.class, c.class) AS class,
            coalesce(l.n, 0) AS ledger, coalesce(c.n, 0) AS counted
     FROM l FULL JOIN counted c ON c.operation_id = l.operation_id AND c.wave = l.wave AND c.class = l.class
     JOIN operations o ON o.id = coalesce(l.operation_id, c.operation_id)
     WHERE coalesce(l.n, 0) <> coalesce(c.n, 0)
       -- With descendants, a parent's wave counters judge it with what it took (a site counted failed
       -- when an app it took failed), and the views count such an operation from the ledger: only the
       -- restore classes, which are the moves alone, must match there.
       AND (coalesce(l.class, c.class) NOT IN ('pending', 'done', 'failed') OR NOT EXISTS (
             SELECT 1 FROM operation_items d WHERE d.operation_id = o.id AND d.parent_seq IS NOT NULL))
     ORDER BY 1, 3, 4`,
    [operationId ?? null],
  );
}
