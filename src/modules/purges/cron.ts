// BLASTGATE_PURGE_PROPOSAL_CRON, checked at start-up (config.ts) with the cron parser BullMQ's job
// schedulers use, so a schedule that would never fire is refused before anything runs.
//
// The parser alone is not enough: it fills in missing fields, so a typo that drops one
// ("0 3 * *" for "0 3 * * *") is read as another, valid schedule (every minute of 00:00–00:59 on
// the 3rd of each month) and "3" as every minute on Wednesdays. The README documents the usual
// five fields (minute hour day-of-month month day-of-week), so exactly five are required.
import { CronExpressionParser } from 'cron-parser';

/** Every day at 03:00 UTC. */
export const DEFAULT_PURGE_PROPOSAL_CRON = '0 3 * * *';

const FIVE_FIELDS = '5 fields: minute hour day-of-month month day-of-week';

/** A cron expression (UTC), or `off`; unset: daily. Returns the cron (null: off) or the problem. */
export function parsePurgeCron(value: string | undefined): { cron: string | null } | { problem: string } {
  const v = value?.trim() || DEFAULT_PURGE_PROPOSAL_CRON;
  if (v.toLowerCase() === 'off') return { cron: null };
  const problem = (why: string) =>
    `BLASTGATE_PURGE_PROPOSAL_CRON must be a cron expression of ${FIVE_FIELDS} (UTC; e.g. "${DEFAULT_PURGE_PROPOSAL_CRON}", daily at 03:00) or "off" (got "${v}": ${why})`;
  const fields = v.split(/\s+/).length;
  if (fields !== 5) return { problem: problem(`${fields} field${fields === 1 ? '' : 's'}`) };
  try {
    CronExpressionParser.parse(v, { tz: 'UTC' });
    return { cron: v };
  } catch (err) {
    return { problem: problem((err as Error).message) };
  }
}

/** When a cron accepted by parsePurgeCron fires next (UTC) after `from`. */
export function nextFiring(cron: string, from: Date = new Date()): Date {
  return CronExpressionParser.parse(cron, { tz: 'UTC', currentDate: from }).next().toDate();
}
