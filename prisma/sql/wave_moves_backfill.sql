-- The moves of operations already in a rollback state when this migration runs (the only views
-- that read them): for every wave and class, the ledger's count of submitted items minus the
-- forward count the wave counters give. Operations in other states have no item in a restore
-- state (a drill's hold counts as done), so they start at zero, as every new operation does.
WITH l AS (
  SELECT i.operation_id, i.wave,
    count(*) FILTER (WHERE i.state IN ('pending', 'claimed'))::int AS pending,
    count(*) FILTER (WHERE i.state = 'done' OR (i.state = 'restoring' AND i.claimed_by = 'drill'))::int AS done,
    count(*) FILTER (WHERE i.state = 'failed')::int AS failed,
    count(*) FILTER (WHERE i.state = 'restoring' AND i.claimed_by IS DISTINCT FROM 'drill')::int AS restoring,
    count(*) FILTER (WHERE i.state = 'restore_failed' AND NOT i.permanent AND i.restore_attempts < 5)::int AS restore_retry,
    count(*) FILTER (WHERE i.state = 'restored')::int AS restored,
    count(*) FILTER (WHERE i.state = 'restore_failed' AND (i.permanent OR i.restore_attempts >= 5))::int AS restore_failed
  FROM "operation_items" i JOIN "operations" o ON o.id = i.operation_id
  WHERE o.state IN ('rolling_back', 'rolled_back', 'rollback_incomplete') AND i.parent_seq IS NULL
  GROUP BY i.operation_id, i.wave
)
INSERT INTO "operation_wave_moves" ("operation_id", "wave", "class", "n")
SELECT l.operation_id, l.wave, v.class, v.n
FROM l JOIN "operation_waves" w ON w.operation_id = l.operation_id AND w.wave = l.wave,
  LATERAL (VALUES
    ('pending', l.pending - (w.to_seq - w.from_seq - w.done - w.failed)),
    ('done', l.done - w.done),
    ('failed', l.failed - w.failed),
    ('restoring', l.restoring),
    ('restore_retry', l.restore_retry),
    ('restored', l.restored),
    ('restore_failed', l.restore_failed)) AS v(class, n)
WHERE v.n <> 0;
