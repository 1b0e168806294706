-- The last command a guard refused (PLAN_STALE, RESOURCES_IN_FLIGHT), kept so that an operation
-- left `approved` by a refused start says why it cannot start until its next transition clears it.
ALTER TABLE "operations" ADD COLUMN "last_refusal" JSONB;
