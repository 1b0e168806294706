// What Blastgate did to a resource, read from its snapshots: every destructive call Blastgate makes
// (a delete, and a restore too) stores one first, indexed by resource. Each snapshot's ledger item
// says whether the call happened and whether a rollback undid it. A resource is *deleted by
// Blastgate* when its latest such event is a delete that was not rolled back. (The ledger has no
// index by resource on purpose: one would slow down writing a 1M-item plan several times over.) The
// restore and purge resolvers read it, and so do the delete planner and the start's freshness check
// for HTTP-adapter types, whose deletes leave the registry row's state alone.
import type pg from 'pg';

/** Item states of a delete whose call went out and was not undone (restoring: a rollback is on it). */
export const DELETED_ITEM_STATES = ['done', 'restore_failed', 'restoring'];

/**
 * SQL, of a delete's ledger item `i`: in a restore state that a rollback took it into from a call
 * of unknown outcome (forward_unconfirmed: failed, pending or claimed with its mark). It says
 * nothing of a delete that took effect: a restore that failed before any request (an unreadable
 * snapshot, a rollback ended first) left such an item restore_failed, read as a delete that
 * stands, and a purge hard-deleted a resource live in its own system
 * (test/purges/forward-unconfirmed.test.ts). It reads as the failed item it was: a delete of
 * unknown outcome.
 */
export const unconfirmedUndo = (i: string) =>
  `(${i}.forward_unconfirmed AND ${i}.state IN ('restoring', 'restore_failed'))`;

/**
 * SQL: delete item `i`'s call took effect and was not undone, i.e. its state is one of `states`
 * (the placeholder bound to DELETED_ITEM_STATES), or `restored` too with `orRestored` (it took
 * effect, then a rollback undid it), and not unconfirmedUndo. Its negation, with a mark, is a
 * delete of unknown outcome.
 */
export const deletedItem = (i: string, states = '$1', orRestored = false) =>
  `(${i}.state = ANY(${states}::text[]${orRestored ? ` || '{restored}'` : ''}) AND NOT ${unconfirmedUndo(i)})`;

/**
 * restore_ids: the resources whose history latestEvents() reads, filled by the caller (this
 * transaction only). taken: not named by a restore's scope, but taken along by the cascade of a
 * resource that is.
 */
export async function createRestoreIds(client: pg.PoolClient, ifNotExists = false): Promise<void> {
  await client.query(
    `CREATE TEMP TABLE ${ifNotExists ? 'IF NOT EXISTS ' : ''}restore_ids (id text PRIMARY KEY, taken boolean DEFAULT false) ON COMMIT DROP`,
  );
}

/**
 * Blastgate's history of the resources `idsSql` selects (a SELECT of one column, id), for the delete
 * planner and the start's freshness check: they join restore_latest `l` and resources `r` on
 * DELETE_STANDS. Adds to restore_ids when an earlier check of the same transaction made it. Returns
 * how many were added; with none, restore_latest may not exist and the caller has nothing to ask.
 */
export async function readHistory(client: pg.PoolClient, idsSql: string, params: unknown[] = []): Promise<number> {
  await createRestoreIds(client, true);
  const r = await client.query(`INSERT INTO restore_ids (id) ${idsSql} ON CONFLICT DO NOTHING`, params);
  if (r.rowCount) await latestEvents(client);
  return r.rowCount ?? 0;
}

/**
 * Blastgate's latest act on the resource is a delete that stands (not rolled back, not restored),
 * and no import said what its state is since (one that omits the state, a routine sync, changes
 * nothing of a delete: see registry/merge.ts): through an HTTP adapter, whose delete leaves the
 * registry row's state alone, this is what says the resource is deleted.
 */
export const DELETE_STANDS = `l.deleted AND ${notImportedSince('l.at')}`;

/** No import said what resource `row` (default `r`)'s state is after `at` (see DELETE_STANDS). */
export function notImportedSince(at: string, row = 'r'): string {
  return `coalesce(${row}.state_imported_at, '-infinity') <= ${at}`;
}

/**
 * SQL: the resource whose ID is `id` was erased: a compliance erasure destroyed its snapshot keys,
 * and none was made since (a resource snapshotted again has a live key). Asked of purged rows only
 * (an erasure leaves every row it erased purged).
 */
export function isErased(id: string): string {
  return `(EXISTS (SELECT 1 FROM resource_keys ek WHERE ek.resource_id = ${id} AND ek.erased_at IS NOT NULL)
    AND NOT EXISTS (SELECT 1 FROM resource_keys lk WHERE lk.resource_id = ${id} AND lk.erased_at IS NULL))`;
}

/**
 * SQL: resource `r` (of type `t`), whose delete by Blastgate at `at` has not been undone by
 * Blastgate, is active again: brought back outside Blastgate. The registry adapter wrote the delete
 * into the row, so an active row was brought back since; an HTTP adapter's row keeps the state its
 * system reports, so only an import after the delete that said active counts.
 */
export function activeAgain(at: string): string {
  return `(r.state = 'active' AND (NOT ${isExternal('t')} OR NOT ${notImportedSince(at)}))`;
}

/** SQL: resource type `t` lives in another system (an HTTP adapter): the registry row's state is theirs. */
export function isExternal(t: string): string {
  return `coalesce(${t}.adapter->>'kind', 'registry') <> 'registry'`;
}

/**
 * SQL: the system resource type `t`'s adapter reaches: "registry", or the kind and base URL of
 * another system's ("http https://apps.internal/api"). Timeouts, retries and templates are not
 * part of it: a rollback through the same system after they changed is the same rollback.
 */
export function adapterSystem(t: string): string {
  return `CASE WHEN NOT ${isExternal(t)} THEN 'registry'
    ELSE (${t}.adapter->>'kind') || ' ' || rtrim(coalesce(${t}.adapter->>'baseUrl', ''), '/') END`;
}

/**
 * SQL: the delete `l` (restore_latest) went through another system than its type's adapter reaches
 * now (adapterSystem, recorded per operation when it was planned): its restore would be sent there,
 * not where the delete happened. A rollback is refused the same way (ADAPTER_CHANGED). Operations
 * planned before adapter_systems was recorded are not asked.
 */
export const deletedThroughOtherSystem = (l: string) =>
  `EXISTS (SELECT 1 FROM operations dop JOIN resource_types dt ON dt.name = ${l}.type
     WHERE dop.id = ${l}.op_id AND ${plannedElsewhere('dop', `${l}.type`, adapterSystem('dt'))})`;

/**
 * SQL: operation `o` was planned against another system for type `name` than `now` (an
 * adapterSystem expression). Operations planned before adapter_systems was recorded are not asked.
 */
export const plannedElsewhere = (o: string, name: string, now: string) =>
  `(${o}.adapter_systems ? ${name} AND ${o}.adapter_systems->>${name} IS DISTINCT FROM ${now})`;

/** SQL: operation `o` acts on type `name`: its target's, or a descendant's its cascade took. */
export const actsOnType = (o: string, name: string) =>
  `(${o}.target_type = ${name}
    OR EXISTS (SELECT 1 FROM operation_items i WHERE i.operation_id = ${o}.id AND i.resource_type = ${name}))`;

/**
 * SQL: resource `r` (type `t`) is active again since its delete `l`, as the system its type
 * reaches reads it (activeAgain); not asked of a delete through another system (adapter_changed).
 */
export const activeAgainHere = (l: string) => `(${activeAgain(`${l}.at`)} AND NOT ${deletedThroughOtherSystem(l)})`;

/** Types whose resources live in another system (see isExternal). */
export const EXTERNAL_TYPES = `SELECT name FROM resource_types t WHERE ${isExternal('t')}`;

/**
 * Whether Blastgate's ledger must say what an external resource is, for an operation acting on
 * resources in these registry states: only when it acts on active ones alone (a delete). A purge or
 * an erasure acts on soft-deleted ones too, so a standing delete does not exclude anything there.
 */
export const ledgerDecides = (states: readonly string[]) => !states.includes('soft_deleted');

/**
 * SQL: the call of snapshot `s` (operation `o`, ledger item `i`) took effect: a delete (done, or
 * rolled back since) or a restore (done). `states`: the placeholder bound to DELETED_ITEM_STATES.
 */
export const tookEffect = (states = '$1') => `((o.action = 'delete' AND ${deletedItem('i', states, true)})
            OR (o.action = 'restore' AND i.state = 'done'))`;
export const TOOK_EFFECT = tookEffect();

/**
 * SQL: nothing of Blastgate's took effect on the resource of snapshot `s` after it: no delete that
 * stands or was rolled back, no restore, no purge or erasure. Read from the snapshots by resource,
 * for any resource (restore_latest holds only those of a scope's plan). `states`: the placeholder
 * bound to DELETED_ITEM_STATES.
 */
export const nothingTookEffectSince = (s: string, states = '$1') => `NOT EXISTS (
  SELECT 1 FROM snapshots s2 JOIN operations o ON o.id = s2.operation_id
  JOIN operation_items i ON i.snapshot_id = s2.id AND (i.operation_id || '') = s2.operation_id
  WHERE s2.resource_id = ${s}.resource_id AND s2.created_at > ${s}.created_at
    AND (${tookEffect(states)} OR (o.action IN ('purge', 'erase') AND i.state = 'done')))`;

/**
 * SQL: the ledger item of snapshot `s`, as `i` (a FROM item after `s`): one probe of the ledger's
 * snapshot index per snapshot, whatever the statistics say (a lateral subquery; OFFSET 0 keeps it
 * one). Joined, with statistics taken while a large operation's ledger had no snapshot yet (a plan
 * is written whole before its deletes run), the planner hashed the operation's whole ledger: a
 * registry page of 10 IDs read 60,000 rows per statement (test/execution/ledger-plans.test.ts).
 * (operation_id || '') keeps it off the primary key, which the same statistics make look cheap.
 */
export const itemOfSnapshot = (s: string, id = `${s}.id`, operationId = `${s}.operation_id`) => `CROSS JOIN LATERAL (
       SELECT x.* FROM operation_items x WHERE x.snapshot_id = ${id} AND (x.operation_id || '') = ${operationId}
       OFFSET 0) i`;

/**
 * SQL, of a delete's ledger item `i`: a rollback's restore of it went out and did not end restored,
 * so the resource may be live again: a restore is in flight (or its run stopped: an ended
 * rollback's held items are recorded once their lease ran out, execution/settle-aborted.ts), or
 * its restores failed after requests were sent (a 5xx after the owning system applied it, a
 * timeout), or their outcome is unknown. A purge must not take it for deleted (purges/resolve.ts).
 */
export const UNDO_UNCERTAIN = `(i.state = 'restoring' OR (i.state = 'restore_failed'
         AND (i.restore_calls > 0 OR i.last_error LIKE 'outcome unknown:%')))`;

/**
 * restore_events: every snapshot of the resources in restore_ids whose call took effect — a delete
 * (done, or rolled back: restored) or a restore (done) — and restore_latest: the latest per resource,
 * with whether a rollback's restore of that delete may have brought it back (UNDO_UNCERTAIN).
 */
export async function latestEvents(client: pg.PoolClient): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS restore_snaps, restore_latest`);
  // One probe of the snapshots' resource index per ID (a lateral subquery; OFFSET 0 keeps it one),
  // whatever the statistics say: joined, with restore_ids unanalysed (guessed at ~1,300 rows) or
  // the snapshots' statistics older than a large delete's, it was planned as a scan of every
  // snapshot: 150 ms at 92k snapshots per rollback batch that asked (npm run bench -- control).
  await client.query(
    `CREATE TEMP TABLE restore_snaps ON COMMIT DROP AS
     SELECT s.id AS snap_id, s.resource_id AS id, s.created_at AS at, s.operation_id AS op_id
     FROM restore_ids x CROSS JOIN LATERAL (
       SELECT s.id, s.resource_id, s.created_at, s.operation_id FROM snapshots s WHERE s.resource_id = x.id OFFSET 0) s`,
  );
  // Temporary tables have no statistics until analysed; without them the join below may loop over
  // an operation's whole ledger once per snapshot.
  await client.query(`ANALYZE restore_snaps`);
  await client.query(
    `CREATE TEMP TABLE restore_latest ON COMMIT DROP AS
     SELECT DISTINCT ON (rs.id) rs.id, rs.snap_id, rs.at, rs.op_id, o.action, i.state AS item_state,
       coalesce(i.resource_type, o.target_type) AS type, i.tenant_id,
       (o.action = 'delete' AND i.state <> 'restored') AS deleted,
       (o.action = 'delete' AND ${UNDO_UNCERTAIN}) AS undo_uncertain
     FROM restore_snaps rs
     JOIN operations o ON o.id = rs.op_id
     -- Through operation_items_snapshot, one probe per snapshot: (operation_id || '') keeps the
     -- planner off the primary key, which with a fresh ledger's stale statistics it would pick and
     -- then scan the operation's whole ledger once per snapshot (29 s for 17,660 HTTP items). A
     -- lateral subquery (OFFSET 0 keeps it one) is probed per snapshot whatever the statistics say:
     -- analysed while a large ledger had no snapshot yet (just planned), they say the index holds
     -- nothing, and a join read all of it into a hash, per rollback batch (0.25–0.35 s for 200).
     ${itemOfSnapshot('rs', 'rs.snap_id', 'rs.op_id')}
     WHERE ${TOOK_EFFECT}
     ORDER BY rs.id, rs.at DESC, rs.snap_id DESC`,
    [DELETED_ITEM_STATES],
  );
  await client.query(`ALTER TABLE restore_latest ADD PRIMARY KEY (id)`);
}

/**
 * restore_uncertain_ids (id, op_id): the resources of restore_ids with a restore operation's restore
 * since their latest act that took effect whose outcome is unknown: its call went out (a mark), then
 * it failed (a 5xx after the downstream applied it, a timeout) or its operation ended without
 * recording it (aborted with the call out). The resource may be live again. Set-based, from the
 * restores' snapshots alone (restores are few beside deletes and purges): a lookup per row cost
 * ~0.4-0.7 s per 10,000 resources with history (npm run bench -- purge). After latestEvents().
 * A rollback's restore of the standing delete alike is restore_latest's undo_uncertain.
 */
export async function uncertainRestoreIds(client: pg.PoolClient): Promise<void> {
  await client.query(`DROP TABLE IF EXISTS restore_uncertain_ids`);
  await client.query(
    `CREATE TEMP TABLE restore_uncertain_ids ON COMMIT DROP AS
     SELECT DISTINCT ON (rs.id) rs.id, rs.op_id FROM restore_snaps rs
     JOIN operations o ON o.id = rs.op_id AND o.action = 'restore'
     ${itemOfSnapshot('rs', 'rs.snap_id', 'rs.op_id')}
     LEFT JOIN restore_latest l ON l.id = rs.id
     WHERE rs.at >= coalesce(l.at, '-infinity') AND i.executed_seq IS NOT NULL AND i.state <> 'done'
     ORDER BY rs.id, rs.at DESC, rs.snap_id DESC`,
  );
  await client.query(`ALTER TABLE restore_uncertain_ids ADD PRIMARY KEY (id)`);
}
