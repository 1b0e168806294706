-- AlterTable
ALTER TABLE "operation_rejections" ADD COLUMN     "held_by" TEXT;
