-- AlterTable
ALTER TABLE "operation_items" ADD COLUMN     "depth" SMALLINT NOT NULL DEFAULT 0,
ADD COLUMN     "parent_seq" INTEGER,
ADD COLUMN     "resource_type" TEXT;

-- CreateIndex
CREATE INDEX "snapshots_resource_id_created_at_idx" ON "snapshots"("resource_id", "created_at");

-- prisma/sql/cascade_ledger.sql
-- Cascades: a parent's descendants are found by (operation, parent_seq). Partial, so that the
-- ledger of an operation without cascades (almost all of them, up to 1M rows) pays nothing for it.
CREATE INDEX operation_items_descendants ON "operation_items" ("operation_id", "parent_seq")
  WHERE "parent_seq" IS NOT NULL;

-- prisma/sql/snapshots_encrypted_only.sql
-- Every new snapshot goes through the encrypted store (content addressed, verified on read). The
-- plaintext rows written before it stay as they are and stay readable, so that an operation
-- executed before the upgrade can still be rolled back: a SQL migration has no master key to
-- encrypt them with, and rewriting them would mean lifting the insert-only trigger on evidence.
-- NOT VALID: the check applies to rows inserted from now on, not to those legacy rows.
ALTER TABLE "snapshots" ADD CONSTRAINT snapshots_encrypted_only
  CHECK ("data" IS NULL AND "content_hash" IS NOT NULL AND "key_id" IS NOT NULL) NOT VALID;
