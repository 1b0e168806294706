-- CreateSchema
CREATE SCHEMA IF NOT EXISTS "public";

-- CreateTable
CREATE TABLE "resource_types" (
    "name" TEXT NOT NULL,
    "id_pattern" TEXT,
    "parent_type" TEXT,
    "cascade_to" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "adapter" JSONB NOT NULL DEFAULT '{"kind":"registry"}',
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "resource_types_pkey" PRIMARY KEY ("name")
);

-- CreateTable
CREATE TABLE "tenants" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "internal" BOOLEAN NOT NULL DEFAULT false,
    "protected" BOOLEAN NOT NULL DEFAULT false,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "tenants_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "tenant_contacts" (
    "tenant_id" TEXT NOT NULL,
    "contact" JSONB NOT NULL,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "tenant_contacts_pkey" PRIMARY KEY ("tenant_id")
);

-- CreateTable
CREATE TABLE "resources" (
    "id" TEXT NOT NULL,
    "type" TEXT NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "parent_id" TEXT,
    "state" TEXT NOT NULL DEFAULT 'active',
    "protected" BOOLEAN NOT NULL DEFAULT false,
    "deleted_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "resources_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "api_tokens" (
    "id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "token_hash" TEXT NOT NULL,
    "created_by" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "revoked_at" TIMESTAMPTZ(3),

    CONSTRAINT "api_tokens_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "operations" (
    "id" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "target_type" TEXT NOT NULL,
    "mode" TEXT NOT NULL,
    "reason" TEXT NOT NULL,
    "ticket" TEXT NOT NULL,
    "state" TEXT NOT NULL,
    "requested_by" TEXT NOT NULL,
    "requested_by_name" TEXT NOT NULL,
    "idempotency_key" TEXT,
    "request_hash" TEXT NOT NULL,
    "rollout" JSONB NOT NULL,
    "halt_policy" JSONB NOT NULL,
    "plan" JSONB,
    "plan_hash" TEXT,
    "rejection" JSONB,
    "item_count" INTEGER NOT NULL DEFAULT 0,
    "tenant_count" INTEGER NOT NULL DEFAULT 0,
    "requires_break_glass" BOOLEAN NOT NULL DEFAULT false,
    "auto_start" BOOLEAN NOT NULL DEFAULT false,
    "current_wave" INTEGER,
    "halt_reason" TEXT,
    "paused_from" TEXT,
    "version" INTEGER NOT NULL DEFAULT 0,
    "bake_until" TIMESTAMPTZ(3),
    "wave_deadline" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),

    CONSTRAINT "operations_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "operation_items" (
    "operation_id" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "resource_id" TEXT NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "ordinal" INTEGER NOT NULL,
    "wave" INTEGER NOT NULL,
    "state" TEXT NOT NULL DEFAULT 'pending',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "last_error" TEXT,
    "snapshot_id" BIGINT,
    "executed_seq" BIGINT,
    "claimed_by" TEXT,
    "claimed_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "operation_items_pkey" PRIMARY KEY ("operation_id","seq")
);

-- CreateTable
CREATE TABLE "operation_waves" (
    "operation_id" TEXT NOT NULL,
    "wave" INTEGER NOT NULL,
    "from_seq" INTEGER NOT NULL,
    "to_seq" INTEGER NOT NULL,
    "tenants" INTEGER NOT NULL,
    "done" INTEGER NOT NULL DEFAULT 0,
    "failed" INTEGER NOT NULL DEFAULT 0,
    "consecutive_failures" INTEGER NOT NULL DEFAULT 0,
    "started_at" TIMESTAMPTZ(3),
    "settled_at" TIMESTAMPTZ(3),

    CONSTRAINT "operation_waves_pkey" PRIMARY KEY ("operation_id","wave")
);

-- CreateTable
CREATE TABLE "operation_rejections" (
    "operation_id" TEXT NOT NULL,
    "ordinal" INTEGER NOT NULL,
    "resource_id" TEXT NOT NULL,
    "class" TEXT NOT NULL,
    "actual_type" TEXT,
    "tenant_id" TEXT,

    CONSTRAINT "operation_rejections_pkey" PRIMARY KEY ("operation_id","ordinal")
);

-- CreateTable
CREATE TABLE "approvals" (
    "id" BIGSERIAL NOT NULL,
    "operation_id" TEXT NOT NULL,
    "approver" TEXT NOT NULL,
    "approver_name" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "plan_hash" TEXT NOT NULL,
    "break_glass" BOOLEAN NOT NULL DEFAULT false,
    "comment" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "approvals_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "signals" (
    "id" BIGSERIAL NOT NULL,
    "operation_id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "tenant_id" TEXT,
    "detail" TEXT,
    "source" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "signals_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "snapshots" (
    "id" BIGSERIAL NOT NULL,
    "operation_id" TEXT NOT NULL,
    "resource_id" TEXT NOT NULL,
    "tenant_id" TEXT NOT NULL,
    "data" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "snapshots_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_events" (
    "seq" BIGSERIAL NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "actor" TEXT NOT NULL,
    "action" TEXT NOT NULL,
    "outcome" TEXT NOT NULL,
    "operation_id" TEXT,
    "payload" JSONB NOT NULL,
    "prev_hash" TEXT NOT NULL,
    "hash" TEXT NOT NULL,

    CONSTRAINT "audit_events_pkey" PRIMARY KEY ("seq")
);

-- CreateTable
CREATE TABLE "settings" (
    "key" TEXT NOT NULL,
    "value" JSONB NOT NULL,
    "updated_by" TEXT,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "settings_pkey" PRIMARY KEY ("key")
);

-- CreateIndex
CREATE INDEX "resources_tenant_id_idx" ON "resources"("tenant_id");

-- CreateIndex
CREATE INDEX "resources_parent_id_idx" ON "resources"("parent_id");

-- CreateIndex
CREATE UNIQUE INDEX "api_tokens_token_hash_key" ON "api_tokens"("token_hash");

-- CreateIndex
CREATE UNIQUE INDEX "operations_idempotency_key_key" ON "operations"("idempotency_key");

-- CreateIndex
CREATE INDEX "operations_state_idx" ON "operations"("state");

-- CreateIndex
CREATE INDEX "operations_created_at_idx" ON "operations"("created_at");

-- CreateIndex
CREATE INDEX "operation_rejections_operation_id_class_ordinal_idx" ON "operation_rejections"("operation_id", "class", "ordinal");

-- CreateIndex
CREATE UNIQUE INDEX "approvals_operation_id_approver_key" ON "approvals"("operation_id", "approver");

-- CreateIndex
CREATE INDEX "signals_operation_id_idx" ON "signals"("operation_id");

-- CreateIndex
CREATE INDEX "snapshots_tenant_id_created_at_idx" ON "snapshots"("tenant_id", "created_at");

-- CreateIndex
CREATE INDEX "snapshots_operation_id_resource_id_idx" ON "snapshots"("operation_id", "resource_id");

-- CreateIndex
CREATE INDEX "audit_events_operation_id_idx" ON "audit_events"("operation_id");

-- AddForeignKey
ALTER TABLE "tenant_contacts" ADD CONSTRAINT "tenant_contacts_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "resources" ADD CONSTRAINT "resources_type_fkey" FOREIGN KEY ("type") REFERENCES "resource_types"("name") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "resources" ADD CONSTRAINT "resources_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "operation_rejections" ADD CONSTRAINT "operation_rejections_operation_id_fkey" FOREIGN KEY ("operation_id") REFERENCES "operations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "approvals" ADD CONSTRAINT "approvals_operation_id_fkey" FOREIGN KEY ("operation_id") REFERENCES "operations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "signals" ADD CONSTRAINT "signals_operation_id_fkey" FOREIGN KEY ("operation_id") REFERENCES "operations"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- prisma/sql/append_only.sql
-- Audit events and snapshots are evidence: once written they never change or disappear.
CREATE OR REPLACE FUNCTION blastgate_forbid_change() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON "audit_events"
  FOR EACH ROW EXECUTE FUNCTION blastgate_forbid_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON "audit_events"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_forbid_change();
CREATE TRIGGER snapshots_append_only BEFORE UPDATE OR DELETE ON "snapshots"
  FOR EACH ROW EXECUTE FUNCTION blastgate_forbid_change();
CREATE TRIGGER snapshots_no_truncate BEFORE TRUNCATE ON "snapshots"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_forbid_change();

-- Execution order across the ledger, so rollback can restore newest first.
CREATE SEQUENCE IF NOT EXISTS operation_item_exec_seq;
