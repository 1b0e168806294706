-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "throttled_by" TEXT,
ADD COLUMN     "throttled_until" TIMESTAMPTZ(3);
