// A chunk holds up to 500 items, and against a slow downstream it runs for minutes: recorded only
// when it ended, its deletes were invisible meanwhile (a new-user trial saw "0 done" for 67 s while
// ~100 deletes had been made), and decide() judged none of them. While the chunk's calls are out,
// the outcomes that have landed are recorded through the same fenced record as the chunk's last
// ones (only rows still claimed under the chunk's token change), at most once per interval, so a
// chunk that finishes within it costs nothing more.
import { isSkipped, type ItemResult } from '../adapters/index.ts';
import { descendantOutcomes } from './cascade-own.ts';
import type { Outcome } from './ledger.ts';

/** How often, at most, a chunk records its landed outcomes while its other calls are still out. */
export const PROGRESS_EVERY_MS = 2_000;
/** The least a recorder's timer waits (its clock and the timers' may disagree by a little). */
const MIN_WAIT_MS = 10;

/**
 * An item's outcome once its call has landed for good: done, or failed (`unapplied` when no try
 * changed anything). Never sent (skipped) or stopped between retries (interrupted): null, the
 * chunk's last record hands those back.
 */
export function landedOutcome(seq: number, r: ItemResult): Outcome | null {
  if (r.ok) return { seq, state: 'done', error: null };
  if (isSkipped(r) || r.interrupted) return null;
  const failed: Outcome = {
    seq,
    state: 'failed',
    error: r.error.slice(0, 500),
    permanent: r.permanent,
    ...(r.ownUnsent ? { ownUnsent: true } : {}),
  };
  return r.permanent && r.unapplied ? { ...failed, unapplied: true } : failed;
}

/**
 * landedOutcome of a claimed item, with each of its descendants' own outcome when they differ from
 * its own (a cascade through several systems: cascade-own.ts), so that a record made while other
 * calls are out keeps an app deleted beside a refused sibling as done, as the chunk's last does.
 */
export function landedItemOutcome(item: LandingItem, r: ItemResult): Outcome | null {
  const landed = landedOutcome(item.seq, r);
  const kids = landed && item.descendants?.length ? descendantOutcomes(item.descendants, r) : undefined;
  return landed && kids ? { ...landed, descendants: kids } : landed;
}
export type LandingItem = { seq: number; descendants?: { seq: number }[] };

export interface ProgressRecorder {
  /** One call landed (in arrival order); may start recording what has landed so far. */
  arrive(item: LandingItem, r: ItemResult): void;
  /**
   * Items failed before any call (refused by a guard, no snapshot): recorded with the next landed
   * calls, not only when the chunk ends (a slow chunk showed them minutes late).
   */
  refused(outcomes: Outcome[]): void;
  /** Waits for a record under way; the seqs recorded so far (the chunk's last record leaves them out). */
  settle(): Promise<Set<number>>;
}

/** The recorder of a chunk whose caller records landed outcomes (none without one). */
export function chunkProgress(
  deps: { progressEveryMs?: number; clock(): number },
  record: ((outcomes: Outcome[]) => Promise<void>) | undefined,
): ProgressRecorder | undefined {
  return record && progressRecorder(record, deps.progressEveryMs ?? PROGRESS_EVERY_MS, () => deps.clock());
}

export function progressRecorder(
  record: (outcomes: Outcome[]) => Promise<void>,
  everyMs: number,
  clock: () => number,
): ProgressRecorder {
  let landed: Outcome[] = [];
  const recorded = new Set<number>();
  let last = clock();
  let running: Promise<void> | undefined;
  // What landed is recorded once the interval is over even when no other call lands after it: a
  // chunk whose last call hung showed 998 deletes made as pending for as long, and a purge's parents
  // waited that long for their children's records (a probe).
  let timer: NodeJS.Timeout | undefined;
  let settled = false;
  const disarm = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  const arm = () => {
    if (timer || settled || !landed.length) return;
    timer = setTimeout(
      () => {
        timer = undefined;
        maybeFlush();
      },
      Math.max(MIN_WAIT_MS, everyMs - (clock() - last)),
    );
    timer.unref();
  };
  const flush = () => {
    disarm();
    const batch = landed;
    landed = [];
    running = record(batch).then(
      () => batch.forEach((o) => recorded.add(o.seq)),
      // Not recorded now: the chunk's last record has them (still claimed under its token).
      () => undefined,
    );
    void running.finally(() => {
      running = undefined;
      last = clock();
      arm();
    });
  };
  const maybeFlush = () => {
    if (!landed.length || running) return;
    if (clock() - last >= everyMs) flush();
    else arm();
  };
  return {
    arrive(item, r) {
      settled = false;
      const o = landedItemOutcome(item, r);
      if (o) landed.push(o);
      maybeFlush();
    },
    refused(outcomes) {
      settled = false;
      landed.push(...outcomes);
      maybeFlush();
    },
    async settle() {
      // The chunk's record of its calls follows: nothing is recorded behind it.
      settled = true;
      disarm();
      while (running) await running;
      disarm();
      return recorded;
    },
  };
}

/**
 * Restores per batch at most (a rollback's, each with its descendants; a restore chunk's part).
 * Batches are sized to take ~PROGRESS_EVERY_MS; this caps them against a fast downstream, where a
 * batch's fixed cost (its pick, superseded check and record: a few statements) is spread over more
 * items: 61,260 restored in ~12 s at 1,000 against 35,500 at 200 (npm run bench -- control).
 */
const BATCH = 1_000;
/** The first batch: small, so that a slow downstream shows its first restores soon. */
export const FIRST_BATCH = 20;
const MIN_BATCH = 5;

/**
 * The next batch's size: twice this one's when it took under half of PROGRESS_EVERY_MS (up to BATCH),
 * what would take about PROGRESS_EVERY_MS at this one's pace when it took longer (at least MIN_BATCH).
 * `sent`: the restores this batch called for (decided without a call cost no time).
 */
export function nextBatchSize(size: number, sent: number, elapsedMs: number): number {
  if (elapsedMs > PROGRESS_EVERY_MS && sent > 0)
    return Math.max(MIN_BATCH, Math.min(BATCH, Math.floor((sent * PROGRESS_EVERY_MS) / elapsedMs)));
  if (elapsedMs < PROGRESS_EVERY_MS / 2) return Math.min(BATCH, size * 2);
  return size;
}
