-- AlterTable
ALTER TABLE "resources" ADD COLUMN     "state_imported_at" TIMESTAMPTZ(3);
