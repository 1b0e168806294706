-- Retention of what was soft-deleted before purge_after existed: the default policy (30 days)
-- from its deletion, so a purge of { dueBefore } finds it and nothing becomes purgeable earlier.
UPDATE "resources" SET "purge_after" = coalesce("deleted_at", now()) + interval '30 days'
WHERE "state" = 'soft_deleted' AND "purge_after" IS NULL;
ALTER TABLE "resource_types" ADD CONSTRAINT "resource_types_retention_days_range"
  CHECK ("retention_days" IS NULL OR "retention_days" BETWEEN 1 AND 3650);
