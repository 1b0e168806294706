// The shapes of the item ledger (ledger.ts): what a run claims, snapshots, marks and records, and
// the Ledger interface the chunk job runs against.
import type { Queryable } from '../../lib/sql.ts';
import type { WaveStats } from '../operations/wave-health.ts';

export interface Range {
  from: number;
  to: number;
}

export interface Descendant {
  seq: number;
  resourceId: string;
  tenantId: string;
  /** Its own resource type: its adapter snapshots (and restores) it. */
  type: string;
  /** 1 for a child of the claimed item, 2 for a grandchild… */
  depth: number;
  snapshotId: number | null;
  /** Restores: the snapshot it is restored to. */
  sourceSnapshotId: number | null;
}

export interface ClaimedItem {
  seq: number;
  resourceId: string;
  tenantId: string;
  /** Its own type when the ledger names one (every restore item does); null: the operation's targetType. */
  type: string | null;
  snapshotId: number | null;
  /** Restores: the snapshot it is restored to (a delete's, verified when read). */
  sourceSnapshotId: number | null;
  /** What a delete of this item takes with it (a cascade), shallowest first; [] for most items. */
  descendants: Descendant[];
  /** Set when an earlier run may already have made the destructive call. */
  executedSeq: number | null;
  attempts: number;
  lastError: string | null;
}

export interface Outcome {
  seq: number;
  state: 'done' | 'failed' | 'pending';
  error: string | null;
  permanent?: boolean;
  /**
   * pending only: a call was sent and its outcome is unknown (it was interrupted between retries).
   * The item keeps its write-ahead mark and the attempt counts; it is sent again with the same key.
   */
  sent?: boolean;
  /**
   * failed only: no try of this run changed anything (the adapter's `unapplied`: every attempt was
   * refused definitively, or none was sent). Recorded with the run's `marked`, the item loses the
   * write-ahead mark this run set (no earlier run can have sent it): it was never acted on, and a
   * rollback neither restores it nor counts it. An item marked before this run keeps its mark.
   */
  unapplied?: boolean;
  /**
   * failed or pending (sent): the item's own call was not sent (or refused with nothing changed),
   * some of its descendants' may have been (ItemFailed.ownUnsent). With the run's `marked`, or on an item whose earlier runs all said
   * so, the item is recorded `own_unsent`: it keeps its mark for those descendants, and a rollback
   * restores them but not it (it was never deleted).
   */
  ownUnsent?: boolean;
  /**
   * How the wave counts it, when not as its state: a restored item whose cascade did not all come
   * back is done in the ledger (it is back) and a failure for the wave and the operation's end.
   */
  verdict?: 'failed';
  /**
   * Restores: each descendant's own outcome (a parent can come back while a child whose snapshot
   * fails verification cannot); and a failed delete whose cascade went through more than one
   * adapter (cascade-own.ts: an app deleted over HTTP beside a sibling that was refused). Without
   * it, descendants take their parent's outcome (deletes).
   */
  descendants?: DescendantOutcome[];
}

export interface DescendantOutcome {
  seq: number;
  state: 'done' | 'failed' | 'pending';
  error: string | null;
  permanent?: boolean;
  /** Never acted on (Outcome.unapplied): it loses the mark its parent's run set, even if the parent keeps its own. */
  unapplied?: boolean;
}

export interface Recorded {
  stats: WaveStats;
  /**
   * The wave's last error after this record: its own last failure, else the one the wave kept. A
   * halt decided on a record without failures (a resume's retries succeeding, the wave still over
   * its threshold on the failures it kept) quotes it.
   */
  lastError?: string;
  recordedDone: number;
  recordedFailed: number;
  /** Descendants recorded done: with their parent's outcome, or with their own (restores). */
  descendantsDone: number;
  /** Claimed items this call recorded done (an erasure destroys their keys in the same transaction). */
  doneSeqs: number[];
}

export interface Snap {
  seq: number;
  /** A descendant's snapshot: the seq of the claimed item that takes it (null: the item's own). */
  parentSeq: number | null;
  resourceId: string;
  tenantId: string;
  data: unknown;
}

export interface Ledger<Tx = Queryable> {
  /** Claims the range's pending items, items this job claimed before, and items whose lease ran out. */
  claim(opId: string, range: Range, jobId: string, token: string): Promise<ClaimedItem[]>;
  /** Renews the lease on what `token` holds; returns how many items it still holds. */
  extend(opId: string, range: Range, token: string): Promise<number>;
  /**
   * Hands never-sent items back as pending, keeping an earlier run's write-ahead mark. `uncount`:
   * the claim was not an attempt (a velocity wait), so it does not use up the item's budget.
   */
  release(
    opId: string,
    range: Range,
    token: string,
    items: ClaimedItem[],
    error: string | null,
    uncount: boolean,
  ): Promise<void>;
  /**
   * Before any destructive call, in one transaction: check the operation is still running this
   * wave (sharing its row lock, so a halt commits either before — nothing is marked — or after,
   * and then the rollback sees the marks), store the snapshots (the items' and their descendants')
   * in the snapshot store and set the write-ahead mark on each item whose snapshot and every
   * descendant's are stored, and on those descendants. Returns the seqs that may be called.
   */
  prepare(opId: string, wave: number, range: Range, token: string, snaps: Snap[], seqs: number[]): Promise<Set<number>>;
  /**
   * Records outcomes (in the order they happened) and the wave's counters; in the caller's transaction.
   * `marked`: the items whose write-ahead mark this run set (it had none before); their mark is
   * cleared when the outcome says nothing was changed: never sent, or failed `unapplied`.
   * `follow` runs in it between the two: what else the outcomes change (retention, erased keys) is
   * written before the wave's row is locked, so concurrent chunks queue on that lock only for the
   * counters and the commit.
   */
  record(
    tx: Tx,
    opId: string,
    wave: number,
    token: string,
    outcomes: Outcome[],
    marked: ReadonlySet<number>,
    now: number,
    follow?: (rec: Omit<Recorded, 'stats'>) => Promise<void>,
  ): Promise<Recorded>;
  /** The wave's counters under its row lock. */
  waveStats(tx: Tx, opId: string, wave: number): Promise<WaveRow | undefined>;
}

/** A wave's counters, and the error of its last failed item (a halt reason quotes it). */
export type WaveRow = WaveStats & { lastError?: string };
