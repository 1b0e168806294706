-- AlterTable
ALTER TABLE "operation_rejections" ADD COLUMN     "via" TEXT;
