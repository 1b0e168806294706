// The queue prefix a database's processes share. An API and its workers must use one: a worker
// started with a mistyped BLASTGATE_QUEUE_PREFIX took no job from the API's queues, yet its
// reconciler re-derived the operations from the shared database into queues of its own and ran
// them, while the API's view said "no worker process is connected" for the whole run (a trial),
// and two sets of queues could run one operation's chunks side by side. Every start records its
// prefix; one that finds another prefix recorded says so (a warning, not a refusal: moving a
// database to a new prefix restarts every process, and the first of them would find the old one).
import type { Queryable } from '../../lib/sql.ts';

const SETTING = 'queue_prefix';

/** Records this process's prefix; returns the one recorded before it when that was another. */
export async function recordQueuePrefix(db: Queryable, prefix: string, role: 'api' | 'worker'): Promise<string | null> {
  const r = await db.query<{ before: string | null }>(
    `WITH was AS (SELECT value->>'prefix' AS before FROM settings WHERE key = $1)
     , now AS (
       INSERT INTO settings (key, value, updated_by) VALUES ($1, $2, 'system')
       ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()
     )
     SELECT (SELECT before FROM was) AS before`,
    [SETTING, JSON.stringify({ prefix, role })],
  );
  const before = r.rows[0]?.before ?? null;
  return before !== null && before !== prefix ? before : null;
}

export const prefixWarning = (prefix: string, before: string) =>
  `BLASTGATE_QUEUE_PREFIX is "${prefix}", but the process started on this database before this one used "${before}": ` +
  "an API and its workers must share one prefix, or this process's jobs and the others' are in different queues " +
  '(the API sees no worker, and operations may run twice over). Unless every process of this database moves to ' +
  `"${prefix}", restart this one with BLASTGATE_QUEUE_PREFIX=${before}`;
