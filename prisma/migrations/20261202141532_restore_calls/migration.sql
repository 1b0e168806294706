-- AlterTable
ALTER TABLE "operation_items" ADD COLUMN     "restore_calls" INTEGER NOT NULL DEFAULT 0;
