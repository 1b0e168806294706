-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "protected_tenants" TEXT[] DEFAULT ARRAY[]::TEXT[];
