-- AlterTable
ALTER TABLE "operation_rejections" ADD COLUMN     "purge_after" TIMESTAMPTZ(3);

-- AlterTable
ALTER TABLE "resource_types" ADD COLUMN     "retention_days" INTEGER;

-- AlterTable
ALTER TABLE "resources" ADD COLUMN     "purge_after" TIMESTAMPTZ(3);

-- CreateIndex
CREATE INDEX "resources_purge_after_idx" ON "resources"("purge_after");

-- prisma/sql/retention_backfill.sql
-- Retention of what was soft-deleted before purge_after existed: the default policy (30 days)
-- from its deletion, so a purge of { dueBefore } finds it and nothing becomes purgeable earlier.
UPDATE "resources" SET "purge_after" = coalesce("deleted_at", now()) + interval '30 days'
WHERE "state" = 'soft_deleted' AND "purge_after" IS NULL;
ALTER TABLE "resource_types" ADD CONSTRAINT "resource_types_retention_days_range"
  CHECK ("retention_days" IS NULL OR "retention_days" BETWEEN 1 AND 3650);
