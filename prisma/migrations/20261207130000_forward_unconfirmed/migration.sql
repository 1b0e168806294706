-- A rollback restores every item whose destructive call may have gone out (its mark), including
-- those whose call failed with an unknown outcome (a 5xx, a timeout). Once such an item was in the
-- restore states, nothing said its delete had never been confirmed: a restore that failed without
-- a request sent (an unreadable snapshot, a rollback ended before the call) left it
-- `restore_failed`, read as a delete that stands, and a purge hard-deleted a resource that was
-- live in its own system. The rollback's claim now records it (execution/rollback-ledger.ts).
ALTER TABLE "operation_items" ADD COLUMN "forward_unconfirmed" BOOLEAN NOT NULL DEFAULT false;

-- Items already in the restore states cannot say where they came from. Those no restore request
-- was sent for are marked, so that no purge takes them for deleted: the same reading as a restore
-- of unknown outcome (those with requests sent already are). A restore drill's hold came from a
-- confirmed delete, and is left alone.
UPDATE "operation_items" SET "forward_unconfirmed" = true
WHERE "state" IN ('restoring', 'restore_failed') AND "restore_calls" = 0
  AND "claimed_by" IS DISTINCT FROM 'drill';
