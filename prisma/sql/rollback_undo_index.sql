-- Rollbacks: the deleted items a rollback has not touched yet, newest first (rollback-ledger.ts
-- pick). Without it every pick scanned the operation's whole ledger for them: 0.3–2 s per batch of
-- at most 200 on a 1M-item operation, a rollback at ~150 items/s (npm run bench -- control).
-- Partial: a planned item has no entry; an item gets one when its delete is recorded (it has its
-- write-ahead mark then), and it leaves once the rollback takes it.
CREATE INDEX operation_items_undo ON "operation_items" ("operation_id", "executed_seq" DESC)
  WHERE "executed_seq" IS NOT NULL AND "parent_seq" IS NULL AND "state" IN ('done', 'failed', 'pending');
