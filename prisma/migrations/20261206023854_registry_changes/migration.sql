-- CreateTable
CREATE TABLE "registry_changes" (
    "id" BIGSERIAL NOT NULL,
    "xid" xid8 NOT NULL DEFAULT pg_current_xact_id(),
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "registry_changes_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "registry_changes_xid_idx" ON "registry_changes"("xid");

-- prisma/sql/registry_changes.sql
-- Registry changes (model RegistryChange): every statement that may make a delete's plan stale
-- notes its transaction, so that `start` reads the plan's whole ledger against the registry only
-- when something changed since the plan (plan-stale.ts). Statement-level: an import of 1M rows, or
-- a chunk's delete of 500, writes one row. Noted: resources added, removed or changed in what a
-- plan checks (type, tenant, parent, state, protection), and any change of a resource type (its
-- idPattern, its cascades). Not noted: retention's due time and the deletion stamps (purge_after,
-- deleted_at, updated_at alone). Tenant protection is in protection_changes.
CREATE FUNCTION blastgate_note_registry_change() RETURNS trigger AS $$
BEGIN
  INSERT INTO registry_changes DEFAULT VALUES;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER resources_registry_changes
  AFTER INSERT OR DELETE OR UPDATE OF id, type, tenant_id, parent_id, state, protected ON "resources"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_note_registry_change();
CREATE TRIGGER resources_registry_truncates AFTER TRUNCATE ON "resources"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_note_registry_change();
-- Types per row: a PUT of the declarations as they are (a routine config sync) changes no row, and
-- its INSERT … ON CONFLICT statement would otherwise be noted every time. Types are few.
CREATE TRIGGER resource_types_registry_changes AFTER INSERT OR DELETE OR UPDATE ON "resource_types"
  FOR EACH ROW EXECUTE FUNCTION blastgate_note_registry_change();
CREATE TRIGGER resource_types_registry_truncates AFTER TRUNCATE ON "resource_types"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_note_registry_change();
