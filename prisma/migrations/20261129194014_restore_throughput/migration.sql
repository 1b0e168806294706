-- CreateTable
CREATE TABLE "restore_throughput" (
    "resource_type" TEXT NOT NULL,
    "adapter_kind" TEXT NOT NULL,
    "items" DOUBLE PRECISION NOT NULL,
    "elapsed_ms" DOUBLE PRECISION NOT NULL,
    "batches" INTEGER NOT NULL DEFAULT 0,
    "measured_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "restore_throughput_pkey" PRIMARY KEY ("resource_type","adapter_kind")
);
