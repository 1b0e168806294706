// BLASTGATE_PURGE_PROPOSAL_CRON, checked at start-up (config.ts) with the cron parser BullMQ's job
// schedulers use, so a schedule that would never fire is refused before anything runs.
import { CronExpressionParser } from 'cron-parser';

/** Every day at 03:00 UTC. */
export const DEFAULT_PURGE_PROPOSAL_CRON = '0 3 * * *';

/** A cron expression (UTC), or `off`; unset: daily. Returns the cron (null: off) or the problem. */
export function parsePurgeCron(value: string | undefined): { cron: string | null } | { problem: string } {
  const v = value?.trim() || DEFAULT_PURGE_PROPOSAL_CRON;
  if (v.toLowerCase() === 'off') return { cron: null };
  try {
    CronExpressionParser.parse(v, { tz: 'UTC' });
    return { cron: v };
  } catch (err) {
    return {
      problem: `BLASTGATE_PURGE_PROPOSAL_CRON must be a cron expression (e.g. "${DEFAULT_PURGE_PROPOSAL_CRON}", daily at 03:00 UTC) or "off" (got "${v}": ${(err as Error).message})`,
    };
  }
}
