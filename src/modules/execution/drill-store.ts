// Ledger access for the restore drill: its row in operation_drills, the item it drills (claimed in
// the ledger so that a rollback does not restore it while the drill deletes it again), and the
// record of where the drill left that item.
import type pg from 'pg';
import { inTransaction } from '../../lib/sql.ts';
import { isExternal, notImportedSince } from '../restores/history.ts';
import type { RestoreCandidate } from './rollback-ledger.ts';
import { recordMoves } from './wave-moves.ts';

/**
 * SQL, of a done item `i`: the registry says its resource changed since its delete: another type
 * or tenant, or (another system's resource) active again by an import. The drill restores its pick
 * from the delete's snapshot and deletes it again: on such a resource it wrote the old snapshot
 * over an edit made since and deleted it (a probe), what a rollback leaves alone
 * (rollback-superseded.ts). It drills another item.
 */
const CHANGED_SINCE_DELETE = `EXISTS (
  SELECT 1 FROM resources r JOIN operations o ON o.id = i.operation_id
  JOIN resource_types t ON t.name = coalesce(i.resource_type, o.target_type)
  LEFT JOIN snapshots s ON s.id = i.snapshot_id
  WHERE r.id = i.resource_id AND (r.type <> t.name OR r.tenant_id <> i.tenant_id
    OR (${isExternal('t')} AND r.state = 'active' AND NOT ${notImportedSince('s.created_at')})))`;

/**
 * How long a drill holds its item against a rollback (claimed_at is set this far ahead; a rollback
 * takes items whose claim is older than its lease). Longer than a drill's three calls with their
 * retries; if the worker dies, a rollback waits this long for the item.
 */
export const DRILL_HOLD_SECONDS = 300;

export interface DrillRow {
  id: string;
  wave: number;
  seq: number | null;
  resourceId: string | null;
  outcome: string;
  detail: string | null;
}

/** Where the drill left the item: deleted as the ledger says, live again, or not known. */
export type DrillItemState = 'deleted' | 'live' | 'unknown';

export interface DrillFinish {
  outcome: 'ok' | 'failed';
  detail: string | null;
  itemState: DrillItemState;
  /**
   * Live again with everything the drill restored (the root and each descendant came back, and the
   * re-delete was refused on every try): the rows lose their write-ahead mark.
   */
  unmark?: boolean;
}

export interface DrillStore {
  /** The operation's newest drill, if any. */
  latest(opId: string): Promise<DrillRow | undefined>;
  /** The operation stopped waiting before an item was picked: nothing was touched. */
  abandon(drillId: string, detail: string): Promise<void>;
  /**
   * Picks the wave's item to drill and claims it with its descendants: the lowest seq done,
   * preferring one whose delete took no descendants. A repeated run gets the item already picked.
   */
  claim(opId: string, drill: DrillRow, range: { fromSeq: number; toSeq: number }): Promise<RestoreCandidate[]>;
  /**
   * Records the drill and hands the item back: done when it is deleted again (or was never
   * restored), failed when it may be live (the ledger must not say deleted for a live resource).
   * Returns false when the claim was lost (a rollback took the item after the hold).
   */
  finish(opId: string, drill: DrillRow, candidates: RestoreCandidate[], f: DrillFinish): Promise<boolean>;
}

const token = (d: DrillRow) => `drill-${d.id}`;

export function pgDrillStore(pool: pg.Pool): DrillStore {
  return {
    async latest(opId) {
      const r = await pool.query<DrillRow>(
        `SELECT id::text AS id, wave, seq, resource_id AS "resourceId", outcome, detail FROM operation_drills
         WHERE operation_id = $1 ORDER BY id DESC LIMIT 1`,
        [opId],
      );
      return r.rows[0];
    },

    async abandon(drillId, detail) {
      await pool.query(
        `UPDATE operation_drills SET outcome = 'abandoned', detail = $2, item_state = 'deleted', finished_at = now()
         WHERE id = $1 AND outcome = 'running'`,
        [drillId, detail],
      );
    },

    claim: (opId, drill, range) =>
      inTransaction(pool, async (tx) => {
        let seq = drill.seq;
        if (seq === null) {
          const picked = await tx.query<{ seq: number }>(
            `SELECT i.seq FROM operation_items i
             WHERE i.operation_id = $1 AND i.seq >= $2 AND i.seq < $3 AND i.parent_seq IS NULL AND i.state = 'done'
               AND NOT ${CHANGED_SINCE_DELETE}
             ORDER BY EXISTS (SELECT 1 FROM operation_items d WHERE d.operation_id = $1 AND d.parent_seq = i.seq), i.seq
             LIMIT 1 FOR UPDATE`,
            [opId, range.fromSeq, range.toSeq],
          );
          seq = picked.rows[0]?.seq ?? null;
          if (seq === null) return [];
          await tx.query(
            `UPDATE operation_drills SET seq = $2,
               resource_id = (SELECT resource_id FROM operation_items WHERE operation_id = $3 AND seq = $2)
             WHERE id = $1`,
            [drill.id, seq, opId],
          );
          drill.seq = seq;
        }
        // The item and what its delete took, done (first run) or already held by this drill (a rerun).
        // Its move out of done is recorded with it (wave-moves.ts): a rollback begun while the drill
        // holds it shows it restoring, as the ledger does.
        const r = await tx.query(
          `WITH was AS (
             SELECT seq, state FROM operation_items
             WHERE operation_id = $1 AND (seq = $2 OR parent_seq = $2)
               AND (state = 'done' OR (state = 'restoring' AND claim_token = $3))
             FOR UPDATE
           ), claimed AS (
             UPDATE operation_items i SET state = 'restoring', claimed_by = 'drill', claim_token = $3,
               claimed_at = now() + make_interval(secs => $4), updated_at = now()
             FROM was WHERE i.operation_id = $1 AND i.seq = was.seq
             RETURNING i.seq, i.resource_id, i.tenant_id, i.executed_seq, i.state, i.parent_seq, i.depth,
               i.resource_type, i.snapshot_id, i.wave, was.state AS from_class, 'restoring'::text AS to_class
           ), ${recordMoves('counted', 'claimed')}
           SELECT * FROM claimed`,
          [opId, seq, token(drill), DRILL_HOLD_SECONDS],
        );
        return r.rows.map((x: Record<string, unknown>): RestoreCandidate => ({
          seq: x.seq as number,
          resourceId: x.resource_id as string,
          tenantId: x.tenant_id as string,
          executedSeq: x.executed_seq === null ? null : Number(x.executed_seq),
          state: x.state as string,
          parentSeq: x.parent_seq as number | null,
          depth: x.depth as number,
          type: x.resource_type as string | null,
          snapshotId: x.snapshot_id === null ? null : Number(x.snapshot_id),
        }));
      }),

    finish: (opId, drill, candidates, f) =>
      inTransaction(pool, async (tx) => {
        const live = f.itemState !== 'deleted';
        const error = live
          ? `restore drill: ${f.itemState === 'live' ? 'restored and not deleted again' : 'restored or not, not deleted again'}: ${f.detail ?? ''}`.slice(
              0,
              500,
            )
          : null;
        // Known live with all it took (restored, and the re-delete refused on every try): this
        // operation's delete of it no longer stands, so the rows lose their write-ahead mark, as a
        // delete refused on every try does (ledger.ts record): a rollback would otherwise restore
        // it over what changed since, and count it restored. Anything less certain keeps the marks
        // (a descendant still deleted is then restored with its parent, as before).
        // Given back as done in the moves whatever the ledger says: a live item's move from done to
        // failed is the wave counters' (below), which count forward outcomes.
        const back = await tx.query<{ seq: number; parent_seq: number | null }>(
          `WITH back AS (
             UPDATE operation_items SET state = CASE WHEN $4 THEN 'failed' ELSE 'done' END,
               last_error = CASE WHEN $4 THEN $5 ELSE last_error END, permanent = CASE WHEN $4 THEN false ELSE permanent END,
               executed_seq = CASE WHEN $6 THEN NULL ELSE executed_seq END,
               claimed_by = NULL, claim_token = NULL, claimed_at = NULL, updated_at = now()
             WHERE operation_id = $1 AND seq = ANY($2::int[]) AND state = 'restoring' AND claim_token = $3
             RETURNING seq, parent_seq, wave, 'restoring'::text AS from_class, 'done'::text AS to_class
           ), ${recordMoves('counted', 'back')}
           SELECT seq, parent_seq FROM back`,
          [opId, candidates.map((c) => c.seq), token(drill), live, error, f.unmark === true],
        );
        const held = candidates.length === 0 || back.rows.length > 0;
        // The wave's counters follow the submitted item (descendants are not counted in waves).
        if (live && back.rows.some((x) => x.parent_seq === null))
          await tx.query(
            `UPDATE operation_waves SET done = done - 1, failed = failed + 1 WHERE operation_id = $1 AND wave = $2`,
            [opId, drill.wave],
          );
        const detail = held ? f.detail : `${f.detail ?? ''} (the item was taken over by a rollback meanwhile)`.trim();
        await tx.query(
          `UPDATE operation_drills SET outcome = $2, detail = $3, item_state = $4, finished_at = now() WHERE id = $1`,
          [drill.id, f.outcome, detail, f.itemState],
        );
        return held;
      }),
  };
}
