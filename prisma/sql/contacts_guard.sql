-- Tenant contacts are how someone calls a customer whose data was deleted: no delete, cascade,
-- purge or erasure path may touch them. Enforced here, not only by code: rows are never deleted
-- (nor truncated), and an update is accepted only from a transaction that declared itself the
-- registry's contact writer (SET LOCAL blastgate.contact_writer = 'registry'), which no
-- destructive path does.
CREATE OR REPLACE FUNCTION blastgate_guard_contacts() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'tenant contacts are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF coalesce(current_setting('blastgate.contact_writer', true), '') <> 'registry' THEN
    RAISE EXCEPTION 'tenant contacts are written only by the registry' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER tenant_contacts_guard BEFORE INSERT OR UPDATE OR DELETE ON "tenant_contacts"
  FOR EACH ROW EXECUTE FUNCTION blastgate_guard_contacts();
CREATE TRIGGER tenant_contacts_no_truncate BEFORE TRUNCATE ON "tenant_contacts"
  FOR EACH STATEMENT EXECUTE FUNCTION blastgate_forbid_change();
