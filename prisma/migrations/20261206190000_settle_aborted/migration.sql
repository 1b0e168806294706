-- An aborted restore, purge or erasure, or a rollback ended by an operator: when nothing of it was
-- left held by a stopped run or sent without an outcome (src/modules/execution/settle-aborted.ts).
-- Cleared by every transition. The reconciler looks for the ones
-- not settled yet: a partial index keeps that one probe of the few, not a scan of every cancelled plan.
ALTER TABLE "operations" ADD COLUMN "settled_at" TIMESTAMPTZ(3);
CREATE INDEX "operations_unsettled" ON "operations" ("id")
  WHERE "state" IN ('cancelled', 'rollback_incomplete') AND "settled_at" IS NULL AND "started_at" IS NOT NULL;
