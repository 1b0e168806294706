-- AlterTable
ALTER TABLE "operation_items" ADD COLUMN     "own_unsent" BOOLEAN NOT NULL DEFAULT false;
