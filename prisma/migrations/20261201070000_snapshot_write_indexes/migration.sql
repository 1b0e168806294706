-- One index entry fewer per snapshot and per new resource key: a delete writes both for every
-- item, and index entries are most of a snapshot write's cost.

-- No query reads snapshots by operation (they are reached by id, by resource and by tenant).
DROP INDEX IF EXISTS "snapshots_operation_id_resource_id_idx";

-- The live key of a resource has its own unique index (resource_keys_live, snapshot_store.sql);
-- by resource otherwise, only erased keys are asked for (was a purged resource erased?).
DROP INDEX IF EXISTS "resource_keys_resource_id_idx";
CREATE INDEX "resource_keys_erased_by_resource" ON "resource_keys" ("resource_id") WHERE "erased_at" IS NOT NULL;

-- Resources by parent: only children are ever looked up (a cascade's descendants, a restore's
-- parents), and a soft delete rewrites the row with an entry in every index it is in, so a
-- resource without a parent no longer has one here.
DROP INDEX IF EXISTS "resources_parent_id_idx";
CREATE INDEX "resources_parent_id_idx" ON "resources" ("parent_id") WHERE "parent_id" IS NOT NULL;
