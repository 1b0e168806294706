-- AlterTable
ALTER TABLE "snapshots" ADD COLUMN     "content_hash" TEXT,
ADD COLUMN     "key_id" BIGINT,
ALTER COLUMN "data" DROP NOT NULL;

-- CreateTable
CREATE TABLE "resource_keys" (
    "id" BIGSERIAL NOT NULL,
    "resource_id" TEXT NOT NULL,
    "wrapped" BYTEA,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "erased_at" TIMESTAMPTZ(3),

    CONSTRAINT "resource_keys_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "snapshot_contents" (
    "resource_id" TEXT NOT NULL,
    "key_id" BIGINT NOT NULL,
    "hash" TEXT NOT NULL,
    "iv" BYTEA NOT NULL,
    "tag" BYTEA NOT NULL,
    "ciphertext" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "snapshot_contents_pkey" PRIMARY KEY ("resource_id","key_id","hash")
);

-- prisma/sql/snapshot_store.sql
-- Encrypted snapshot contents are evidence like snapshots: insert-only.
CREATE TRIGGER snapshot_contents_append_only BEFORE UPDATE OR DELETE ON "snapshot_contents"
  FOR EACH ROW EXECUTE FUNCTION blastgate_forbid_change();
CREATE TRIGGER snapshot_contents_no_truncate BEFORE TRUNCATE ON "snapshot_contents"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_forbid_change();

-- At most one live key per resource (two workers snapshotting a resource at once share one).
CREATE UNIQUE INDEX resource_keys_live ON "resource_keys" ("resource_id") WHERE "erased_at" IS NULL;

-- A key is never deleted, and the only change allowed is its erasure (the wrapped key destroyed).
CREATE OR REPLACE FUNCTION blastgate_key_erasure_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'resource keys are never deleted; erase them instead' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.wrapped IS NULL OR NEW.wrapped IS NOT NULL OR NEW.erased_at IS NULL
     OR NEW.id <> OLD.id OR NEW.resource_id <> OLD.resource_id OR NEW.created_at <> OLD.created_at THEN
    RAISE EXCEPTION 'a resource key may only be erased (wrapped set to NULL, erased_at set), once' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER resource_keys_erasure_only BEFORE UPDATE OR DELETE ON "resource_keys"
  FOR EACH ROW EXECUTE FUNCTION blastgate_key_erasure_only();
CREATE TRIGGER resource_keys_no_truncate BEFORE TRUNCATE ON "resource_keys"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_forbid_change();
