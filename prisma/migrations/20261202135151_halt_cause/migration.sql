-- AlterTable
ALTER TABLE "operations" ADD COLUMN     "halt_cause" TEXT;

-- prisma/sql/halt_cause_backfill.sql
-- The cause of a stop that is in force now, where the stored reason is known to be it: a halted
-- or paused operation's reason is its halt's (pause's), and a rollback not started by an operator
-- was started by a halt. Without it, an operator's rollback of an operation halted before this
-- migration would again say only what the operator said.
UPDATE "operations"
SET "halt_cause" = (CASE WHEN "state" = 'paused' THEN 'paused: ' ELSE 'halted: ' END) || "halt_reason"
WHERE "halt_reason" IS NOT NULL AND "halt_cause" IS NULL
  AND ("state" IN ('halted', 'paused') OR ("state" = 'rolling_back' AND "halt_reason" NOT LIKE 'rollback by %'));
