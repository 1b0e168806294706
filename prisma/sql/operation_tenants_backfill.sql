-- The tenants of every operation planned before this table existed, from its item ledger (a
-- rejected operation has no items), so the rolling budgets count them too.
INSERT INTO "operation_tenants" ("operation_id", "tenant_id", "items")
SELECT "operation_id", "tenant_id", count(*)::int FROM "operation_items" GROUP BY "operation_id", "tenant_id";
