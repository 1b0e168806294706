-- The snapshot a delete's or erasure's plan took before it read protection: while no protection
-- change committed since (protection_changes), a chunk need not read its items' protection again.
-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "protection_seen" TEXT;
