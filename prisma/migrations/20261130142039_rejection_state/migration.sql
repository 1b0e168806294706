-- AlterTable
ALTER TABLE "operation_rejections" ADD COLUMN     "state" TEXT;
