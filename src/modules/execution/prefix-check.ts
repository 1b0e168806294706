// The queue prefix a database's processes share. An API and its workers must use one: a worker
// started with a mistyped BLASTGATE_QUEUE_PREFIX took no job from the API's queues, yet its
// reconciler re-derived the operations from the shared database into queues of its own and ran
// them, while the API's view said "no worker process is connected" for the whole run (a trial).
// Every start records its prefix and when; one that finds another prefix started within the last
// day says so, naming them and when, and which is meant is left to the operator: a start with the
// right prefix after a mistyped one was told to take the typo (a later trial). A warning, not a
// refusal: moving a database to a new prefix restarts every process, and the first would find the old.
import type { Queryable } from '../../lib/sql.ts';

const SETTING = 'queue_prefixes';

export interface OtherPrefix {
  prefix: string;
  role: string;
  at: Date;
}

/** SQL: the prefixes in settings value `value` other than $2, started within the last day, newest first. */
const othersIn = (value: string) =>
  `SELECT p.key AS prefix, p.value->>'role' AS role, (p.value->>'at')::timestamptz AS at
   FROM jsonb_each(${value}) p
   WHERE p.key <> $2 AND jsonb_typeof(p.value) = 'object' AND (p.value->>'at')::timestamptz > now() - interval '1 day'
   ORDER BY 3 DESC`;

/** "x" (worker, last at …), …: the other prefixes as both messages name them. */
const named = (others: readonly OtherPrefix[]) =>
  others.map((o) => `"${o.prefix}" (${o.role}, last at ${o.at.toISOString()})`).join(', ');

/** Records this process's prefix; returns the other prefixes started on this database within a day. */
export async function recordQueuePrefix(db: Queryable, prefix: string, role: 'api' | 'worker'): Promise<OtherPrefix[]> {
  const r = await db.query<{ prefix: string; role: string; at: Date }>(
    `WITH was AS (SELECT value FROM settings WHERE key = $1)
     , now AS (
       INSERT INTO settings (key, value, updated_by)
       VALUES ($1, jsonb_build_object($2::text, jsonb_build_object('at', now(), 'role', $3::text)), 'system')
       ON CONFLICT (key) DO UPDATE SET value = settings.value || EXCLUDED.value, updated_at = now()
     )
     ${othersIn('(SELECT value FROM was)')}`,
    [SETTING, prefix, role],
  );
  return r.rows;
}

export const prefixWarning = (prefix: string, others: OtherPrefix[]) =>
  `BLASTGATE_QUEUE_PREFIX is "${prefix}", but processes of this database started with another prefix within the last day: ` +
  named(others) +
  '. An API and its workers must share one prefix, or their jobs are in different queues (the API sees no worker, and two sets of queues run the same operations): check which one is meant, and restart the processes that use another';

/**
 * The other prefixes started on this database within a day, read only: what a view that finds no
 * worker connected names, since a worker started later under another prefix warned only itself,
 * and the API's view said "no worker process is connected" while that worker ran the operation.
 */
export async function otherQueuePrefixes(db: Queryable, prefix: string): Promise<OtherPrefix[]> {
  const r = await db.query<{ prefix: string; role: string; at: Date }>(
    `WITH s AS (SELECT value FROM settings WHERE key = $1) ${othersIn('(SELECT value FROM s)')}`,
    [SETTING, prefix],
  );
  return r.rows;
}

/** The sentence a no-worker wait adds when processes of this database run under other prefixes. */
export const otherPrefixesText = (prefix: string, others: readonly OtherPrefix[]) =>
  ` Processes of this database started under another queue prefix within the last day: ` +
  named(others) +
  `; this one uses "${prefix}". A worker under another prefix takes none of this process's jobs: check BLASTGATE_QUEUE_PREFIX.`;
