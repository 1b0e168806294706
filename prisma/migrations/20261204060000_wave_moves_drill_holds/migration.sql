-- prisma/sql/wave_moves_drill_holds.sql
-- The restore drills' holds when this migration runs. Until now the moves counted a drill's hold as
-- done (a rolling-back view then said done where the ledger said restoring); the drill's claim now
-- records its move from done to restoring, and its finish the move back, so a hold taken before
-- this migration is recorded here, once, as its claim would have recorded it.
INSERT INTO "operation_wave_moves" AS m ("operation_id", "wave", "class", "n")
SELECT i.operation_id, i.wave, v.class, sum(v.n)::int
FROM "operation_items" i, LATERAL (VALUES ('done', -1), ('restoring', 1)) AS v(class, n)
WHERE i.state = 'restoring' AND i.claimed_by = 'drill' AND i.parent_seq IS NULL
GROUP BY i.operation_id, i.wave, v.class
ORDER BY i.operation_id, i.wave, v.class
ON CONFLICT ("operation_id", "wave", "class") DO UPDATE SET "n" = m."n" + excluded."n";
