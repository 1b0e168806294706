// Resolves a purge's scope to resources and classifies each one, in set-based SQL inside the
// caller's transaction, on the restore resolver's staging tables (restores/resolve.ts): what a
// scope names and whether Blastgate's latest act on each resource is a delete that still stands.
// The classification leaves plan_class and an empty plan_cascade behind, so that the plan, the
// locks and the rejection report are the delete planner's own.
import type pg from 'pg';
import { holdsResources, LIVE_STATES } from '../operations/lifecycle-types.ts';
import {
  createRestoreIds,
  deletedThroughOtherSystem,
  isExternal,
  latestEvents,
  notImportedSince,
  uncertainRestoreIds,
} from '../restores/history.ts';
import { resolveDeleted, type LeftOut } from '../restores/resolve.ts';
import { summarizeLeftOut, type LeftOutReason } from '../restores/left-out.ts';
import { leftOutIds, leftOutSentence } from '../restores/left-out-words.ts';
import { UnprocessableError } from '../../lib/errors.ts';
import { DEFAULT_RETENTION_DAYS } from './retention.ts';
import { MOVED_SINCE_DELETE } from '../restores/classify.ts';
import { CASCADE_DEPTH } from '../operations/cascade-plan.ts';
import { keepParentsOfKept, leaveOutMoved, leaveOutUnsafe, refuseParentsOfKept } from './leave-out.ts';
import type { PurgeScope } from './schemas.ts';

export async function resolvePurge(client: pg.PoolClient, scope: PurgeScope, now: Date): Promise<LeftOut | null> {
  let leftOut: LeftOut | null = null;
  if (scope.kind === 'due') {
    await client.query(`SET LOCAL work_mem = '256MB'`);
    await createRestoreIds(client);
    await client.query(
      `INSERT INTO restore_ids (id) SELECT id FROM resources WHERE purge_after <= $1 AND state <> 'purged'`,
      [scope.dueBefore],
    );
    await latestEvents(client);
    // Longest due first.
    await client.query(
      `INSERT INTO plan_input (ord, id)
       SELECT (row_number() OVER (ORDER BY r.purge_after, r.id) - 1)::int, r.id
       FROM restore_ids x JOIN resources r ON r.id = x.id`,
    );
    if (await leaveOutMoved(client)) leftOut = await summarizeLeftOut(client);
  } else leftOut = await resolveDeleted(client, scope);
  await classify(client, scope.kind === 'ids' ? scope.targetType : null, now);
  // What a listed ID's delete took along and is purged already is gone, as the purge would leave it:
  // it refused its parent for good ("already purged", via a sibling purged by a purge that failed
  // the parent for an app whose hard delete failed: a probe).
  if (scope.kind === 'ids')
    await client.query(
      `DELETE FROM plan_class c USING restore_ids x WHERE x.id = c.id AND x.taken AND c.class = 'purged'`,
    );
  // What may be live again is never purged, nor what its type's adapter would hard-delete in another
  // system than its delete went to: a list of IDs refuses it (restore_uncertain, adapter_changed),
  // the other scopes leave it out, saying so, and purge the rest (one such app rejected every daily
  // proposal of the retention scheduler: a trial).
  if (scope.kind !== 'ids' && (await leaveOutUnsafe(client))) leftOut = await summarizeLeftOut(client);
  // A list of IDs takes each one's cascade with it and refuses the ID when a child cannot go
  // (restores/resolve.ts expandCascades); the other scopes leave such a parent out.
  if (scope.kind !== 'ids' && (await keepParentsOfKept(client))) leftOut = await summarizeLeftOut(client);
  if (scope.kind === 'ids') await refuseParentsOfKept(client, now);
  return leftOut;
}

/**
 * One pass: duplicate, unknown, type_mismatch (ids only; not for what a listed resource's delete
 * cascade took), in_flight (a live operation holds it, named), purged, not_deleted, within_retention
 * (its purgeAfter is later than now, named), ok.
 *
 * Deleted, by adapter kind: the registry adapter writes the delete into the row (soft_deleted); an
 * HTTP adapter leaves the row alone, so there it is Blastgate's latest act on it (a delete not
 * undone), unless an import changed the row since. purgeAfter: the row's, or for a resource
 * deleted before it was recorded, its deletion time plus its retention.
 */
async function classify(client: pg.PoolClient, targetType: string | null, now: Date): Promise<void> {
  // What a restore (or a delete's rollback: restore_latest's undo_uncertain) may have brought back is
  // never purged: a trial purged two live apps so.
  await uncertainRestoreIds(client);
  await client.query(
    `CREATE TEMP TABLE plan_dups ON COMMIT DROP AS
     SELECT id, min(ord) AS first_ord FROM plan_input GROUP BY id HAVING count(*) > 1`,
  );
  await client.query(
    `CREATE TEMP TABLE plan_class ON COMMIT DROP AS
     SELECT i.ord, i.id, r.type AS actual_type, coalesce(r.tenant_id, l.tenant_id) AS tenant_id, r.state,
       lo.id AS held_by, NULL::text AS via, r.type, due.purge_after,
       CASE
         WHEN d.first_ord IS NOT NULL AND i.ord > d.first_ord THEN 'duplicate'
         WHEN r.id IS NULL THEN 'unknown'
         WHEN $1::text IS NOT NULL AND r.type <> $1 AND NOT x.taken THEN 'type_mismatch'
         WHEN lo.id IS NOT NULL THEN 'in_flight'
         WHEN r.state = 'purged' THEN 'purged'
         -- What a listed ID's cascade takes along that an import moved to another tenant or type
         -- since its delete: another customer's now, taken without being named (a trial). Named
         -- itself, it is the operator's to purge (moved-since.test.ts).
         WHEN x.taken AND coalesce(l.deleted, false) AND ${MOVED_SINCE_DELETE} THEN 'moved'
         WHEN ur.op_id IS NOT NULL OR coalesce(l.undo_uncertain, false) THEN 'restore_uncertain'
         -- Its hard delete would go to another system than its delete did, which may answer 404
         -- ("already gone", counted done) for a resource it never had (restores: the same class).
         WHEN coalesce(l.deleted, false) AND ${deletedThroughOtherSystem('l')} THEN 'adapter_changed'
         WHEN NOT (r.state = 'soft_deleted'
                   OR (${isExternal('t')} AND coalesce(l.deleted, false)
                       AND ${notImportedSince('l.at')})) THEN 'not_deleted'
         WHEN due.purge_after IS NULL OR due.purge_after > $3 THEN 'within_retention'
         ELSE 'ok'
       END AS class
     FROM plan_input i
     JOIN restore_ids x ON x.id = i.id
     LEFT JOIN plan_dups d ON d.id = i.id
     LEFT JOIN resources r ON r.id = i.id
     LEFT JOIN resource_types t ON t.name = r.type
     LEFT JOIN restore_latest l ON l.id = i.id
     LEFT JOIN restore_uncertain_ids ur ON ur.id = i.id
     LEFT JOIN resource_locks lk ON lk.resource_id = i.id
     LEFT JOIN operations lo ON lo.id = lk.operation_id AND ${holdsResources('lo', '$2')}
     CROSS JOIN LATERAL (
       SELECT coalesce(r.purge_after, coalesce(r.deleted_at, l.at) + make_interval(days => coalesce(t.retention_days,
         (SELECT (value->>'days')::int FROM settings WHERE key = 'retention'), $4))) AS purge_after
     ) due`,
    [targetType, LIVE_STATES, now, DEFAULT_RETENTION_DAYS],
  );
  // A purge takes no cascade: every resource it hard-deletes is an item of its own.
  await client.query(
    `CREATE TEMP TABLE plan_cascade (id text, type text, tenant_id text, root text, depth int, protected boolean)
     ON COMMIT DROP`,
  );
}

/**
 * When each within_retention sample's retention ends (the report names it): a listed parent refused
 * through its child (`via`) waits for the child's, not for its own, which may be past (a trial read
 * "app_500 … retained until" the site's date, a day before the app's).
 */
export async function retentionEnds(client: pg.PoolClient): Promise<Map<string, string>> {
  await client.query(
    `UPDATE plan_class c SET purge_after = r.purge_after FROM resources r
     WHERE c.class = 'within_retention' AND c.via IS NOT NULL AND r.id = c.via AND r.purge_after IS NOT NULL`,
  );
  const r = await client.query<{ id: string; purge_after: Date }>(
    `SELECT id, purge_after FROM plan_class WHERE class = 'within_retention' AND purge_after IS NOT NULL`,
  );
  return new Map(r.rows.map((x) => [x.id, x.purge_after.toISOString()]));
}

/**
 * The purge's ledger: every resource in wave order, with its own type; within a wave, types a
 * cascade reaches deeper first (apps before their sites: family-waves.ts keeps a parent out of an
 * earlier wave than its children, and chunks run in seq order), then longest due first.
 */
export async function insertPurgeItems(
  client: pg.PoolClient,
  operationId: string,
  waveOf: Map<string, number>,
): Promise<void> {
  await client.query(
    `WITH RECURSIVE reach(name, depth) AS (
       SELECT name, 0 FROM resource_types
       UNION ALL
       SELECT c.name, r.depth + 1 FROM reach r JOIN resource_types t ON t.name = r.name
       CROSS JOIN LATERAL unnest(t.cascade_to) AS c(name) WHERE r.depth < $4
     ), depth AS (SELECT name, max(depth) AS depth FROM reach GROUP BY name)
     INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, resource_type)
     SELECT $1, (row_number() OVER (ORDER BY w.wave, coalesce(d.depth, 0) DESC, c.purge_after, c.ord) - 1)::int,
       c.id, c.tenant_id, c.ord, w.wave, c.type
     FROM plan_class c JOIN unnest($2::text[], $3::int[]) AS w(tenant_id, wave) ON w.tenant_id = c.tenant_id
     LEFT JOIN depth d ON d.name = c.type
     ORDER BY 2`,
    [operationId, [...waveOf.keys()], [...waveOf.values()], CASCADE_DEPTH],
  );
}

/** What the plan hash binds besides the waves: every resource and its type. */
export async function purgeDigestInput(client: pg.PoolClient): Promise<string> {
  const r = await client.query<{ s: string | null }>(
    `SELECT string_agg(id || ' ' || type, E'\n' ORDER BY id) AS s FROM plan_class`,
  );
  return r.rows[0]?.s ?? '';
}

/** Every offending ID for the full report, and when each within_retention one's retention ends. */
export async function storePurgeRejections(client: pg.PoolClient, operationId: string): Promise<void> {
  await client.query(
    `INSERT INTO operation_rejections (operation_id, ordinal, resource_id, class, actual_type, tenant_id, held_by, via, purge_after)
     SELECT $1, ord, id, class, actual_type, tenant_id, held_by, via,
       CASE WHEN class = 'within_retention' THEN purge_after END
     FROM plan_class WHERE class <> 'ok'`,
    [operationId],
  );
}

/**
 * What a purge leaves out that is deleted and not purged yet, by reason, with why (said of one, or
 * of several): the scope names it, the purge does not take it.
 */
const DELETED_LEFT_OUT: readonly [LeftOutReason, (l: LeftOut) => number | undefined, (one: boolean) => string][] = [
  [
    'restore_uncertain',
    (l) => l.restoreUncertain,
    (one) =>
      one
        ? 'a restore of it went out with its outcome unknown, so it may be live again; restore it again to settle it'
        : 'a restore of each went out with its outcome unknown, so they may be live again; restore them again to settle it',
  ],
  [
    'adapter_changed',
    (l) => l.adapterChanged,
    (one) =>
      `deleted through another system than ${one ? 'its' : 'their'} type's adapter reaches now, which would be sent ${one ? 'its' : 'their'} hard delete${one ? '' : 's'}; declare the adapter as it was`,
  ],
  [
    'moved',
    (l) => l.moved,
    (one) =>
      `moved to another tenant or type since ${one ? 'its' : 'their'} delete (an import says so): another customer's now, not Blastgate's to hard-delete; by ID it is still the operator's to name`,
  ],
  [
    'children_kept',
    (l) => l.childrenKept,
    (one) =>
      `kept because a child of ${one ? 'it' : 'each'} is not purged with ${one ? 'it' : 'them'}: within its retention, live, moved, or of a tenant a later wave takes`,
  ],
  [
    'deleted_again',
    (l) => l.deletedAgain,
    (one) => `restored and deleted again since by another operation, whose purge takes ${one ? 'it' : 'them'}`,
  ],
];

/**
 * When a purge left out every deleted resource of its scope: "All 3 deleted resources in this scope
 * were left out: 2 restore_uncertain (why: IDs), 1 children_kept (…)", or null when it left out
 * none (nothing is deleted). "Nothing in this scope is deleted and not purged yet" was said of a
 * tenant whose deleted resources were all left out, and read as if there were none (a trial).
 */
function allLeftOut(leftOut: LeftOut | null, one: string, many: string): string | null {
  if (!leftOut) return null;
  const counted = DELETED_LEFT_OUT.map(([reason, count, why]) => [reason, count(leftOut) ?? 0, why] as const).filter(
    ([, n]) => n > 0,
  );
  const total = counted.reduce((sum, [, n]) => sum + n, 0);
  if (total === 0) return null;
  const ids = (reason: LeftOutReason, n: number) => {
    const some = leftOutIds(leftOut, reason);
    return `${some.slice(0, 5).join(', ')}${n > Math.min(some.length, 5) ? ', …' : ''}`;
  };
  const lead = total === 1 ? `The only ${one} was left out` : `All ${total} ${many} were left out`;
  return `${lead}: ${counted.map(([reason, n, why]) => `${n} ${reason} (${why(n === 1)}: ${ids(reason, n)})`).join(', ')}; nothing to purge`;
}

const deletedReasons = DELETED_LEFT_OUT.map(([reason]) => reason);

/**
 * 422 NOTHING_TO_PURGE, saying why: for dueBefore, that nothing is due by then and when the next
 * resource is (a requester who asked too early learns when to ask); for a tenant or an operation,
 * what of it is purged already. When everything deleted in the scope was left out, it says so,
 * counted by reason (details.leftOut has the counts and the first IDs of each).
 */
export async function nothingToPurge(
  client: pg.PoolClient,
  scope: PurgeScope,
  leftOut: LeftOut | null,
): Promise<UnprocessableError> {
  if (scope.kind !== 'due') {
    const all = allLeftOut(leftOut, 'deleted resource in this scope', 'deleted resources in this scope');
    return new UnprocessableError(
      'NOTHING_TO_PURGE',
      all
        ? `${all}${leftOutSentence(leftOut, 'purged again', deletedReasons)}`
        : scope.kind === 'tenant'
          ? // Not "nothing is deleted": the registry may list soft-deleted resources of the tenant that
            // an import moved to it after their delete, which no scope but a list of IDs takes (a trial).
            `Blastgate deleted nothing of tenant ${scope.tenantId} that is still deleted and not purged yet (a resource an import moved to it after its delete is purged by ID only)${leftOutSentence(leftOut, 'purged again')}`
          : `Nothing in this scope is deleted and not purged yet${leftOutSentence(leftOut, 'purged again')}`,
      { scope, ...(leftOut ? { leftOut } : {}) },
    );
  }
  const next = await client.query<{ at: Date | null }>(
    // Later than asked: what is due by then but kept back by its children (keepParentsOfKept) is
    // purged once they are due, and a time already past told the requester nothing (a trial).
    `SELECT min(purge_after) AS at FROM resources WHERE purge_after > $1 AND state <> 'purged'`,
    [scope.dueBefore],
  );
  const at = next.rows[0]?.at?.toISOString() ?? null;
  const nextDue = at
    ? `the next resource's retention ends at ${at}`
    : 'no deleted resource is waiting for its retention to end';
  const all = allLeftOut(
    leftOut,
    `resource due for purging by ${scope.dueBefore}`,
    `resources due for purging by ${scope.dueBefore}`,
  );
  return new UnprocessableError(
    'NOTHING_TO_PURGE',
    all
      ? `${all}; ${nextDue}${leftOutSentence(leftOut, 'purged', deletedReasons)}`
      : `Nothing is due for purging by ${scope.dueBefore}: ${nextDue}${leftOutSentence(leftOut, 'purged')}`,
    { scope, nextPurgeAfter: at, ...(leftOut ? { leftOut } : {}) },
  );
}
