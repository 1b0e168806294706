-- Cascades: a parent's descendants are found by (operation, parent_seq). Partial, so that the
-- ledger of an operation without cascades (almost all of them, up to 1M rows) pays nothing for it.
CREATE INDEX operation_items_descendants ON "operation_items" ("operation_id", "parent_seq")
  WHERE "parent_seq" IS NOT NULL;
