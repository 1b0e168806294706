-- AlterTable
ALTER TABLE "operation_items" ADD COLUMN     "source_snapshot_id" BIGINT;

-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "scope" JSONB;
