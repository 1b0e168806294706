-- AlterTable
ALTER TABLE "operation_items" ADD COLUMN     "claim_token" TEXT,
ADD COLUMN     "next_attempt_at" TIMESTAMPTZ(3),
ADD COLUMN     "permanent" BOOLEAN NOT NULL DEFAULT false,
ADD COLUMN     "restore_attempts" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "operation_waves" ADD COLUMN     "progress_at" TIMESTAMPTZ(3);

-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "expires_at" TIMESTAMPTZ(3),
ADD COLUMN     "progress_at" TIMESTAMPTZ(3);

-- CreateTable
CREATE TABLE "resource_locks" (
    "resource_id" TEXT NOT NULL,
    "operation_id" TEXT NOT NULL,

    CONSTRAINT "resource_locks_pkey" PRIMARY KEY ("resource_id")
);
