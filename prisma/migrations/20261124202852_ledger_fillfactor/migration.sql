-- This is an empty migration.

-- prisma/sql/ledger_fillfactor.sql
-- Each ledger row is updated a few times while it executes (claimed → write-ahead → outcome), on
-- columns no index covers. Free space in each page lets Postgres do those as HOT updates (no new
-- index entries), which is most of the cost of running a wave.
ALTER TABLE "operation_items" SET (fillfactor = 70);
