-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "restore_wait" JSONB;
