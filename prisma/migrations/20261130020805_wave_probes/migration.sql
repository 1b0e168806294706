-- AlterTable
ALTER TABLE "operation_waves" ADD COLUMN     "probed_at" TIMESTAMPTZ(3),
ADD COLUMN     "probes" JSONB;
