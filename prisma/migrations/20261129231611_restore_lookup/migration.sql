-- This is an empty migration.

-- prisma/sql/restore_lookup.sql
-- Restores: from a resource's snapshots to the ledger items that took them (what happened to it,
-- resolve.ts). Without it that join scans an operation's whole ledger once per snapshot whenever
-- the ledger's statistics are stale (a freshly executed operation: ~100 s to plan restoring 17,660
-- items). Partial: a planned item has no snapshot yet, so writing a 1M-item plan pays nothing; an
-- item gets its one entry when its snapshot is taken.
CREATE INDEX operation_items_snapshot ON "operation_items" ("snapshot_id") WHERE "snapshot_id" IS NOT NULL;
