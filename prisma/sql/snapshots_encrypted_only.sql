-- Every new snapshot goes through the encrypted store (content addressed, verified on read). The
-- plaintext rows written before it stay as they are and stay readable, so that an operation
-- executed before the upgrade can still be rolled back: a SQL migration has no master key to
-- encrypt them with, and rewriting them would mean lifting the insert-only trigger on evidence.
-- NOT VALID: the check applies to rows inserted from now on, not to those legacy rows.
ALTER TABLE "snapshots" ADD CONSTRAINT snapshots_encrypted_only
  CHECK ("data" IS NULL AND "content_hash" IS NOT NULL AND "key_id" IS NOT NULL) NOT VALID;
