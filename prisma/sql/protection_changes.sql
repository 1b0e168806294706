-- Protection changes (model ProtectionChange): every statement that may change what a delete must
-- leave alone notes its transaction. Statement-level, so an import of 1M rows writes one row, and
-- only for the columns protection depends on: the registry adapter's deletes (state, purge_after)
-- never fire it.
CREATE FUNCTION blastgate_note_protection_change() RETURNS trigger AS $$
BEGIN
  INSERT INTO protection_changes DEFAULT VALUES;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER resources_protection_changes AFTER INSERT OR UPDATE OF protected, tenant_id ON "resources"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_note_protection_change();
CREATE TRIGGER tenants_protection_changes AFTER INSERT OR UPDATE OF protected ON "tenants"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_note_protection_change();
