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
