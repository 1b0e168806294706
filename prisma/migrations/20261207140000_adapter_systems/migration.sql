-- Which system each resource type's adapter reached when the operation was planned (the kind, and
-- an HTTP adapter's baseUrl): a rollback goes through the adapter declared now, and after a type
-- was re-declared to another system it restored nothing where the delete had deleted, and read
-- rolled_back (execution/engine-store.ts refuses it: ADAPTER_CHANGED). Null for operations planned
-- before: nothing to compare.
ALTER TABLE "operations" ADD COLUMN "adapter_systems" JSONB;
