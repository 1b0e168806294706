-- CreateTable
CREATE TABLE "operation_tenants" (
    "operation_id" TEXT NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "items" INTEGER NOT NULL,

    CONSTRAINT "operation_tenants_pkey" PRIMARY KEY ("operation_id","tenant_id")
);

-- CreateIndex
CREATE INDEX "operations_finished_at_idx" ON "operations"("finished_at");

-- prisma/sql/operation_tenants_backfill.sql
-- The tenants of every operation planned before this table existed, from its item ledger (a
-- rejected operation has no items), so the rolling budgets count them too.
INSERT INTO "operation_tenants" ("operation_id", "tenant_id", "items")
SELECT "operation_id", "tenant_id", count(*)::int FROM "operation_items" GROUP BY "operation_id", "tenant_id";
