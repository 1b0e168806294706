// Resolves every staged ID against the registry in set-based SQL and classifies it (ID_CLASSES).
// Everything runs inside the caller's transaction on the staging table `plan_input`; the plan of
// an all-ok list is built in plan-build.ts.
import type pg from 'pg';
import type { TokenScope } from '../auth/roles.ts';
import { classifyCascade, countDescendants, expandCascade, markDescendantsLockedByOthers } from './cascade-plan.ts';
import { ACTIVE_ONLY } from '../erasure/states.ts';
import { DELETE_STANDS, ledgerDecides, readHistory, uncertainRestoreIds } from '../restores/history.ts';
import { holdsResources, LIVE_STATES } from './lifecycle-types.ts';
import { deferLockRows, joinLocks, markLockRows } from './resource-locks.ts';
import { estimatedRows, NESTED_LOOPS, NESTED_LOOPS_END } from '../../lib/sql.ts';

export const ID_CLASSES = [
  'ok',
  'unknown',
  'type_mismatch',
  'pattern_mismatch',
  'duplicate',
  'already_deleted',
  'restore_uncertain',
  'out_of_scope',
  'in_flight',
  'protected',
] as const;
export type IdClass = (typeof ID_CLASSES)[number];
const SAMPLE_PER_CLASS = 100;
/** From this many submitted IDs, the registry join runs over parallel workers (see classify). */
const PARALLEL_FROM = 500_000;
/**
 * Up to one submitted ID per this many registry rows, each ID is looked up by the registry's
 * primary key instead of joined by hash (see joinStrategy).
 */
const LOOKUP_RATIO = 12;
/** From this many submitted IDs, their lookups are split over parallel workers (see joinStrategy). */
const PARALLEL_LOOKUP_FROM = 20_000;

/** How classify joins the submitted IDs to the registry. */
export type RegistryJoin = 'lookup' | 'parallel-lookup' | 'hash' | 'parallel';

/**
 * The operation a rejected ID names, stored in one column (held_by): an uncertain one's (a
 * restore's) is the delete that may have happened, any other's the live operation holding it.
 */
export const heldOrDeletedBy = (cls: string, op: string | null): Pick<Offender, 'heldBy' | 'deletedBy'> =>
  !op ? {} : cls === 'uncertain' ? { deletedBy: op } : { heldBy: op };

export interface Offender {
  index: number;
  id: string;
  actualType: string | null;
  tenantId: string | null;
  state?: string | null;
  /** in_flight: the live operation that holds the resource. */
  heldBy?: string;
  /** uncertain (restores): the delete whose outcome for it is unknown (its rollback restores it). */
  deletedBy?: string;
  /**
   * The listed resource is rejected for a resource its cascade takes (a child, a grandchild…), not
   * for itself: which one. Without it, "protected: site_5" sent the operator to a site that is not.
   */
  via?: { id: string; type: string | null; tenantId: string | null };
}
/** The classes of a delete plan by default; a restore has its own (restores/schemas.ts). */
export interface Classification<C extends string = IdClass> {
  counts: Record<C, number>;
  /** First offending IDs of each non-ok class, in submission order. */
  samples: Partial<Record<C, Offender[]>>;
  rejected: boolean;
  /** Descendants the ok IDs' cascades take with them (locked and planned with them). */
  descendants: number;
  /**
   * Delete plans: no ok ID had a lock row when classified (or classify left the lock rows to the
   * lock stage: deferLockRows) and no descendant is taken, so lockPlanned may try a plain insert
   * first.
   */
  unlocked?: boolean;
}

/**
 * One pass over the input: duplicates first (the 2nd+ occurrence), then unknown IDs (reported as
 * pattern_mismatch when they do not even look like the target type), wrong type, pattern, outside
 * the submitting token's scope (out_of_scope), a resource another live operation holds
 * (in_flight), state, and protection. Materialised once so that counts, samples and items read the
 * same rows. Then the cascades of what is ok: a resource whose cascade would take one held by a
 * live operation, a protected one, or one of a tenant outside the token's scope, is classified so
 * too.
 */
export async function classify(
  client: pg.PoolClient,
  targetType: string,
  idPattern: string | null,
  cascadeTo: string[],
  scope: TokenScope | null = null,
  /** Registry states the operation acts on (statesActedOn): any other is already_deleted. */
  states: readonly string[] = ACTIVE_ONLY,
  /**
   * How many IDs were staged (duplicates included), and whether intake proved them all distinct
   * (IntakeResult.distinct): then they are resolved without grouping them by ID first.
   */
  input: {
    submitted: number;
    distinct: boolean;
    join?: RegistryJoin;
    /** The plan takes its locks after this (not a dry run): see deferLockRows. */
    lockStage?: boolean;
  },
  /** The type's resources live in another system (HTTP adapter): see deletedElsewhere(). */
  external = false,
): Promise<Classification> {
  // The type is the same for every resolved row (any other is a type_mismatch), so its scope is
  // judged once here; tenants go through a hash join, not `= ANY` over up to 10,000 per row.
  const typeInScope = !scope?.resourceTypes || scope.resourceTypes.includes(targetType);
  await tuneForBulk(client);
  // One pass over the input: grouped by ID (a hash aggregate), so each distinct ID is resolved once
  // and its first occurrence classified; the 2nd+ occurrences (duplicates) are added afterwards
  // only when the group count shows there are any — a second pass over a 1M-row input and a sort
  // by ID for the join cost more than the registry join itself. An input proved distinct is
  // resolved as it is: grouping it would change nothing and cost ~1 s per million IDs. `lock_row`
  // says a lock row exists for the resource (its holder may have ended; markLockRows): lockPlanned
  // then knows whether it may insert.
  const ids = input.distinct ? 'plan_input' : '(SELECT id, min(ord) AS ord FROM plan_input GROUP BY id)';
  const join = input.join ?? (await joinStrategy(client, input.submitted, scope));
  if (join !== 'hash') await client.query(JOIN_SETTINGS[join]);
  const resolved = await client.query(
    `CREATE TEMP TABLE plan_class ON COMMIT DROP AS
     SELECT i.ord, i.id, r.type AS actual_type, r.tenant_id, r.state, NULL::text AS held_by, NULL::text AS via,
       CASE
         WHEN r.id IS NULL AND $2::text IS NOT NULL AND i.id !~ $2 THEN 'pattern_mismatch'
         WHEN r.id IS NULL THEN 'unknown'
         WHEN r.type <> $1 THEN 'type_mismatch'
         WHEN $2::text IS NOT NULL AND i.id !~ $2 THEN 'pattern_mismatch'
         WHEN NOT $3 OR ($4::text[] IS NOT NULL AND st.tenant_id IS NULL) THEN 'out_of_scope'
         WHEN NOT (r.state = ANY($5::text[])) THEN 'already_deleted'
         WHEN r.protected THEN 'protected'
         ELSE 'ok'
       END AS class,
       false AS lock_row
     FROM ${ids} i
     LEFT JOIN resources r ON r.id = i.id
     LEFT JOIN (SELECT DISTINCT unnest($4::text[])) AS st(tenant_id) ON st.tenant_id = r.tenant_id`,
    [targetType, idPattern, typeInScope, scope?.tenants ?? null, states],
  );
  if (join !== 'hash') await client.query(JOIN_DEFAULTS[join]);
  const resolvedRows = resolved.rowCount ?? 0;
  const duplicates = resolvedRows < input.submitted;
  const deferred = deferLockRows(input.lockStage ?? false, duplicates, cascadeTo, external && ledgerDecides(states));
  if (!deferred) await markLockRows(client, resolvedRows);
  // Fewer distinct IDs than submitted: the later occurrences are duplicates, reported with what
  // their first occurrence resolved to.
  if (duplicates) {
    await client.query(
      `INSERT INTO plan_class (ord, id, actual_type, tenant_id, state, held_by, class, lock_row)
       SELECT i.ord, i.id, c.actual_type, c.tenant_id, c.state, c.held_by, 'duplicate', c.lock_row
       FROM plan_input i JOIN plan_class c ON c.id = i.id AND i.ord > c.ord`,
    );
  }
  if (external && ledgerDecides(states)) await deletedElsewhere(client);
  await expandCascade(client, cascadeTo, states);
  // Without cascade types there is nothing under the submitted resources to classify.
  if (cascadeTo.length) await classifyCascade(client, scope?.tenants ?? null);
  // Real row counts and distinct tenants for the statements that follow (lock, plan, ledger):
  // unanalysed, a temp table looks like a few hundred rows of 200 tenants, and the ledger's join
  // of 1M rows to their waves became a merge join sorting 1M tenant IDs.
  // A small sample is enough (3,000 rows): only tenant_id and class are ever joined or filtered on.
  await client.query(
    `ALTER TABLE plan_class ALTER COLUMN tenant_id SET STATISTICS 10, ALTER COLUMN class SET STATISTICS 10;
     ANALYZE plan_class (tenant_id, class)`,
  );
  if (!deferred) return summarize(client, ID_CLASSES, true);
  // Counted without samples first: a rejected list is summarised again once its lock rows are in.
  const counted = await summarize(client, ID_CLASSES, true, false);
  if (!counted.rejected) return counted;
  await markLockRows(client, resolvedRows);
  return summarize(client, ID_CLASSES, true);
}

// Only for the registry join: the statements after it keep PostgreSQL's own choices.
const PARALLEL = `SET LOCAL parallel_setup_cost = 0; SET LOCAL parallel_tuple_cost = 0`;
const PARALLEL_DEFAULTS = `SET LOCAL parallel_setup_cost TO DEFAULT; SET LOCAL parallel_tuple_cost TO DEFAULT`;
// A 100k-ID staging table is ~4 MB, under the 8 MB from which PostgreSQL scans a table in parallel.
const ANY_SIZE = `SET LOCAL min_parallel_table_scan_size = 0`;
const ANY_SIZE_DEFAULT = `SET LOCAL min_parallel_table_scan_size TO DEFAULT`;
const JOIN_SETTINGS = {
  lookup: NESTED_LOOPS,
  'parallel-lookup': `${NESTED_LOOPS}; ${PARALLEL}; ${ANY_SIZE}`,
  parallel: PARALLEL,
};
const JOIN_DEFAULTS = {
  lookup: NESTED_LOOPS_END,
  'parallel-lookup': `${NESTED_LOOPS_END}; ${PARALLEL_DEFAULTS}; ${ANY_SIZE_DEFAULT}`,
  parallel: PARALLEL_DEFAULTS,
};

/**
 * The registry join PostgreSQL's cost model does not choose on its own here, measured on 2 cores
 * against 2M registry rows (all in shared buffers) with the whole classify statement:
 * - `hash` (its choice at any size) reads and hashes the whole registry whatever the input: ~0.45 s
 *   at 100k IDs. Looking each ID up by primary key (`lookup`) took 0.30 s in registry order and
 *   0.39 s scrambled; at 200k 0.59 / 0.86 s against 0.72; at 400k 1.15 / 1.90 against 1.10–1.16.
 *   So a lookup up to one ID per LOOKUP_RATIO registry rows (reltuples: ANALYZE's count; a never
 *   analysed registry keeps the hash). A token scoped to tenants keeps it too: without hash joins
 *   its scope's tenants (up to 10,000) would be a nested loop for every ID.
 * - `parallel-lookup`: the same lookups split over parallel workers (the submitted IDs scanned in
 *   parallel, each looked up by its worker) from PARALLEL_LOOKUP_FROM IDs: 100k IDs 131 → 85 ms
 *   (psql, IDs compared bytewise, 3 runs each, 2026-12-07). Not measured below 100k: the bound is
 *   where the serial lookups (~1.3 µs each, ~25 ms for 20k) come near what starting 2 workers costs.
 * - `parallel` splits a large input over parallel workers: 1M IDs 3.3 → 2.5 s; at 100k–500k no
 *   gain or a loss (building the shared hash of the registry costs what it saves). Only this
 *   statement: the ones after read the temporary table, which parallel workers cannot.
 */
export async function joinStrategy(
  client: pg.PoolClient,
  submitted: number,
  scope: TokenScope | null,
): Promise<RegistryJoin> {
  if (submitted >= PARALLEL_FROM) return 'parallel';
  if (scope?.tenants) return 'hash';
  if (submitted * LOOKUP_RATIO > (await estimatedRows(client, 'resources'))) return 'hash';
  return submitted >= PARALLEL_LOOKUP_FROM ? 'parallel-lookup' : 'lookup';
}

/**
 * A delete through an HTTP adapter leaves the registry row's state alone (the system of record says
 * what it is, by import), so the row alone would classify a resource Blastgate already deleted as
 * `ok`: sent a second delete, snapshotted in its deleted state, and then restored by the second
 * operation's rollback — undoing the first delete without anyone asking. Here Blastgate's latest
 * act on each `ok` resource decides, as for restores and purges: a delete that stands (not undone
 * by a rollback or a restore, and no import said the resource is active since) is `already_deleted`
 * — unless a restore of it since (a restore operation's, or that delete's rollback's) went out with
 * its outcome unknown: it may be live again, and "already deleted" would send the operator away
 * from a live resource. That is `restore_uncertain` (a restore settles it), as purges say it.
 */
async function deletedElsewhere(client: pg.PoolClient): Promise<void> {
  if (!(await readHistory(client, `SELECT id FROM plan_class WHERE class = 'ok'`))) return;
  await uncertainRestoreIds(client);
  await client.query(
    `UPDATE plan_class c SET
       class = CASE WHEN ur.id IS NOT NULL OR l.undo_uncertain THEN 'restore_uncertain' ELSE 'already_deleted' END,
       state = CASE WHEN o.mode = 'hard' THEN 'purged' ELSE 'soft_deleted' END
     FROM restore_latest l JOIN resources r ON r.id = l.id JOIN operations o ON o.id = l.op_id
     LEFT JOIN restore_uncertain_ids ur ON ur.id = l.id
     WHERE c.id = l.id AND c.class = 'ok' AND ${DELETE_STANDS}`,
  );
}

/**
 * Settings for the plan's set-based statements over up to 1M rows (SET LOCAL: this transaction
 * only). Hash tables of that size in memory rather than batched to disk; no JIT, whose compile
 * time (a few hundred ms per statement) these plain scans and joins never win back.
 */
export async function tuneForBulk(client: pg.PoolClient): Promise<void> {
  await client.query(`SET LOCAL work_mem = '256MB'; SET LOCAL jit = off`);
}

/**
 * Marks the IDs a concurrent plan locked first (it committed while this one was classifying) as
 * in_flight, so the plan is rejected naming the operation that holds them.
 */
export async function markLockedByOthers<C extends string = IdClass>(
  client: pg.PoolClient,
  operationId: string,
  classes: readonly C[] = ID_CLASSES as unknown as readonly C[],
  /** How many IDs the plan locks (joinLocks); unknown, PostgreSQL joins as it chooses. */
  planned = 0,
): Promise<Classification<C>> {
  await joinLocks(client, planned, () =>
    client.query(
      `UPDATE plan_class c SET class = 'in_flight', held_by = l.operation_id
       FROM resource_locks l JOIN operations o ON o.id = l.operation_id AND ${holdsResources('o', '$2')}
       WHERE c.class = 'ok' AND l.resource_id = c.id AND l.operation_id <> $1`,
      [operationId, LIVE_STATES],
    ),
  );
  await markDescendantsLockedByOthers(client, operationId);
  return summarize(client, classes);
}

/** Counts per class over plan_class, and the first offenders of each class when any is not ok. */
export async function summarize<C extends string = IdClass>(
  client: pg.PoolClient,
  classes: readonly C[] = ID_CLASSES as unknown as readonly C[],
  /** plan_class has lock_row (classify's): say whether any ok ID had a lock row (`unlocked`). */
  lockRows = false,
  /** The first offenders of a rejected list; without them, the counts only. */
  withSamples = true,
): Promise<Classification<C>> {
  const counts = Object.fromEntries(classes.map((c) => [c, 0])) as Record<C, number>;
  const byClass = await client.query<{ class: C; n: number; locked: number }>(
    `SELECT class, count(*)::int AS n, ${lockRows ? 'count(*) FILTER (WHERE lock_row)::int' : '0'} AS locked
     FROM plan_class GROUP BY class`,
  );
  for (const r of byClass.rows) counts[r.class] = r.n;
  const lockedOk = byClass.rows.find((r) => r.class === 'ok')?.locked ?? 0;
  const rejected = classes.some((c) => c !== 'ok' && counts[c] > 0);
  const samples: Classification<C>['samples'] = {};
  if (rejected && withSamples) {
    const res = await client.query<{
      class: C;
      ord: number;
      id: string;
      actual_type: string | null;
      tenant_id: string | null;
      state: string | null;
      held_by: string | null;
      via: string | null;
      via_type: string | null;
      via_tenant: string | null;
    }>(
      // The first rows of each offending class by a top-N pass each (LIMIT keeps it a pass per
      // class): numbered over a sort of every rejected row, 1M of them took 2.1 s. The via's
      // resource by a lookup per sample (OFFSET 0 keeps PostgreSQL from turning it into a join):
      // as a join, it hashed the whole registry (100k unknown IDs against 2M resources: 546–601 →
      // 38 ms). Statement log and psql, 2026-12-07.
      `SELECT s.class, s.ord, s.id, s.actual_type, s.tenant_id, s.state, s.held_by, s.via,
         v.type AS via_type, v.tenant_id AS via_tenant
       FROM unnest($1::text[]) AS k(class)
       CROSS JOIN LATERAL (SELECT * FROM plan_class c WHERE c.class = k.class ORDER BY c.ord LIMIT $2) s
       LEFT JOIN LATERAL (SELECT type, tenant_id FROM resources WHERE id = s.via OFFSET 0) v ON true
       ORDER BY s.class, s.ord`,
      [byClass.rows.filter((r) => r.class !== 'ok' && r.n > 0).map((r) => r.class), SAMPLE_PER_CLASS],
    );
    for (const r of res.rows) {
      (samples[r.class] ??= []).push({
        index: r.ord,
        id: r.id,
        actualType: r.actual_type,
        tenantId: r.tenant_id,
        ...(r.class === 'already_deleted' ? { state: r.state } : {}),
        ...heldOrDeletedBy(r.class, r.held_by),
        ...(r.via ? { via: { id: r.via, type: r.via_type, tenantId: r.via_tenant } } : {}),
      });
    }
  }
  const descendants = rejected ? 0 : await countDescendants(client);
  return {
    counts,
    samples,
    rejected,
    descendants,
    ...(lockRows ? { unlocked: lockedOk === 0 && descendants === 0 } : {}),
  };
}

/** Every offending ID, for the full report behind a rejection. */
export async function storeRejections(client: pg.PoolClient, operationId: string) {
  await client.query(
    `INSERT INTO operation_rejections (operation_id, ordinal, resource_id, class, actual_type, tenant_id, held_by, state, via)
     SELECT $1, ord, id, class, actual_type, tenant_id, held_by, CASE WHEN class = 'already_deleted' THEN state END, via
     FROM plan_class WHERE class <> 'ok'`,
    [operationId],
  );
}
