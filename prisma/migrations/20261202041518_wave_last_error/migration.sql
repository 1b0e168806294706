-- AlterTable
ALTER TABLE "operation_waves" ADD COLUMN     "last_error" TEXT;
