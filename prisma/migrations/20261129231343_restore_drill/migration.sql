-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "drill_state" TEXT;

-- CreateTable
CREATE TABLE "operation_drills" (
    "id" BIGSERIAL NOT NULL,
    "operation_id" TEXT NOT NULL,
    "wave" INTEGER NOT NULL,
    "resource_id" TEXT,
    "seq" INTEGER,
    "outcome" TEXT NOT NULL DEFAULT 'running',
    "detail" TEXT,
    "item_state" TEXT,
    "started_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "operation_drills_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "operation_drills_operation_id_idx" ON "operation_drills"("operation_id");

-- AddForeignKey
ALTER TABLE "operation_drills" ADD CONSTRAINT "operation_drills_operation_id_fkey" FOREIGN KEY ("operation_id") REFERENCES "operations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
