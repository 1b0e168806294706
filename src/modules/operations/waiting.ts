// Why an operation that should be moving does not, as its views say it: a velocity cap holding
// it back (`throttled`), and what it waits for (`waiting`): the queue, a worker, items another run
// holds, a rollback's restore retries, item outcomes, or the step after a bake.
import type { OperationRow } from './repository.ts';
import { RESTORE_ATTEMPTS, RESTORE_BACKOFF_MS } from '../execution/rollback-ledger.ts';

type HeldFields = Pick<OperationRow, 'state' | 'throttledBy' | 'throttledUntil' | 'restoreWait' | 'bakeUntil'>;

/** The velocity cap holding a running operation's items back right now, if one is. */
export function throttleOf(op: Omit<HeldFields, 'restoreWait' | 'bakeUntil'>, now = Date.now()) {
  if (!op.throttledUntil || !op.throttledBy || op.throttledUntil.getTime() <= now) return null;
  if (op.state !== 'running') return null;
  return { cap: op.throttledBy, until: op.throttledUntil.toISOString() };
}

/** When the bake after the current wave ends, while baking (the views' `bakeUntil`); null otherwise. */
export const bakeUntilOf = (op: Pick<HeldFields, 'state' | 'bakeUntil'>) =>
  op.state === 'baking' && op.bakeUntil ? op.bakeUntil.toISOString() : null;

/** States in which an operation moves through the work queue (and so can wait on it). */
export const QUEUED_STATES = new Set(['running', 'baking', 'rolling_back']);

export interface QueueHolds {
  /** Since when this process has lost its Redis connection, or Redis has not answered it. */
  queueDownSince: Date | null;
  /** Redis has not answered with its connection open (a frozen host, a partition): not lost. */
  queueHung?: boolean;
  /** Since when no worker process is connected to the work queue (worker-presence.ts). */
  noWorkersSince: Date | null;
  /**
   * The last item outcome of the operation (its waves' and its own progress time), when the caller
   * read it: a running operation with none for STILL_AFTER_MS says so.
   */
  lastProgressAt?: Date | null;
  /** When this process's Redis connection came back after its last outage, if it did. */
  queueBackAt?: Date | null;
  /**
   * While no worker is connected: what it says of processes of this database started under another
   * queue prefix (prefix-check.ts), or nothing when there are none.
   */
  otherPrefixes?: string;
}
/**
 * How long after Redis answers again a missing worker is taken for one still reconnecting (ioredis
 * backs off up to 2 s between tries, then BullMQ's worker resumes its loop: ~5 s in a trial).
 */
export const RECONNECT_GRACE_MS = 15_000;
/**
 * How long past its end a bake may last before its view says what it waits for: probe rounds come
 * every 5 s (bake.ts) and the first to land after the end moves the operation on.
 */
export const BAKE_LATE_MS = 15_000;
export const NO_HOLDS: QueueHolds = { queueDownSince: null, noWorkersSince: null };

/**
 * Why an operation that should be moving is not: the queue it moves through is unreachable, or no
 * worker takes work from it, or its rollback waits for failed restores to be retried. Nothing is
 * lost meanwhile (the workers re-derive queued work from the ledger once Redis is back; queued work
 * waits for a worker), but without this the view read as `running` (or `rolling_back`) with nothing
 * moving and no reason.
 */
export function waitingOf(op: Pick<OperationRow, 'state'> & Partial<HeldFields>, holds: QueueHolds, now = Date.now()) {
  if (SETTLING_STATES.has(op.state)) return settlingOf(op, now);
  if (!QUEUED_STATES.has(op.state)) return null;
  if (holds.queueDownSince)
    return {
      on: 'redis' as const,
      since: holds.queueDownSince.toISOString(),
      detail: holds.queueHung
        ? "The work queue (Redis) does not answer, though its connection is open (a frozen host, a partition; /readyz says so too): chunks already in a worker's hands go on, but no new work is picked up until it answers. Nothing is lost; queued work is re-derived from the ledger when it does."
        : "The work queue (Redis) cannot be reached: chunks already in a worker's hands go on, but no new work is picked up until it is back. Nothing is lost; queued work is re-derived from the ledger when it returns.",
    };
  if (holds.noWorkersSince && holds.queueBackAt && now - holds.queueBackAt.getTime() < RECONNECT_GRACE_MS)
    return {
      on: 'workers' as const,
      since: holds.noWorkersSince.toISOString(),
      detail: `The work queue (Redis) answers again since ${holds.queueBackAt.toISOString()}; its workers reconnect on their own within seconds and pick the work up. Nothing is lost; the work waits in the queue.`,
    };
  if (holds.noWorkersSince)
    return {
      on: 'workers' as const,
      since: holds.noWorkersSince.toISOString(),
      detail:
        'No worker process is connected to the work queue, so nothing is picked up: start one (`npm run worker`, or an API with BLASTGATE_WORKERS_IN_PROCESS not false). Nothing is lost; the work waits in the queue.' +
        (holds.otherPrefixes ?? ''),
    };
  if (op.state === 'baking' && op.bakeUntil && now - op.bakeUntil.getTime() >= BAKE_LATE_MS)
    return {
      on: 'bake_end' as const,
      since: op.bakeUntil.toISOString(),
      detail:
        'The bake ended then and no probe round has moved the operation on since. A round (the health probes, then the next wave) is a queued job every 5 s: after PostgreSQL or Redis was away it is retried with backoff (seconds), and the reconciler queues it again if it was lost. With no move for haltPolicy.stallSeconds after the end the watchdog halts (or pauses) the operation.',
    };
  const retry = restoreRetryOf(op, now, holds.lastProgressAt);
  const held = heldClaimsOf(op, holds.lastProgressAt, now, retry);
  if (held) return held;
  if (retry) return retry;
  // Workers are there and the queue too, yet nothing lands: say since when, and what holds items
  // that long (a throttle says its own reason; a bake is not a wait for outcomes).
  // A rollback that slept for a retry is at work from when the retry was due: without that, the
  // moment it went out the view turned from restore_retry to "no item outcome recorded since" the
  // failure before the backoff (a new-user trial).
  const due = retryDueAt(restoreWaitOf(op));
  const last = due && (!holds.lastProgressAt || due > holds.lastProgressAt) ? due : holds.lastProgressAt;
  const moving = op.state === 'running' || op.state === 'rolling_back';
  const throttled = throttleOf(
    { state: op.state, throttledBy: op.throttledBy ?? null, throttledUntil: op.throttledUntil ?? null },
    now,
  );
  if (moving && last && now - last.getTime() >= STILL_AFTER_MS && !throttled)
    return {
      on: 'progress' as const,
      since: last.toISOString(),
      detail:
        'No item outcome recorded since then. A worker that stopped (killed, out of memory) keeps its claimed items until its claim lease ends (BLASTGATE_WORKER_LOCK_MS), then another worker takes them over; a worker that shut down (Ctrl-C, SIGTERM) handed its unsent items back, and they go on when a worker takes their job again; a downstream that does not answer holds them until its calls time out; after PostgreSQL or Redis was away, the chunks it failed run again once it is back. With no progress for haltPolicy.stallSeconds the watchdog halts the operation.',
    };
  return null;
}

/** When the retry a rollback last slept for was due (its restore_wait), if it wrote one. */
function retryDueAt(w: RestoreWait | null): Date | null {
  const due = Date.parse(w?.nextRetryAt ?? '');
  return Number.isNaN(due) ? null : new Date(due);
}

/** What a rolling-back operation's rollback job wrote when it last went to sleep (null otherwise). */
function restoreWaitOf(op: Pick<OperationRow, 'state'> & Partial<HeldFields>): RestoreWait | null {
  return op.state === 'rolling_back' ? waitNoteOf(op) : null;
}

/** The operation row's `restore_wait`, whatever its state (null when it holds none). */
const waitNoteOf = (op: Partial<HeldFields>): RestoreWait | null =>
  op.restoreWait && typeof op.restoreWait === 'object' ? (op.restoreWait as RestoreWait) : null;

/**
 * The items other runs hold, as noted on the operation's row (`restore_wait.held`): by the rollback
 * job when it goes to sleep, and by the reconciler for the claims of a run whose process is gone —
 * of a rollback, or of a running delete (stopped-holds.ts).
 */
function heldNoteOf(op: Pick<OperationRow, 'state'> & Partial<HeldFields>): RestoreWait['held'] | undefined {
  return op.state === 'rolling_back' || op.state === 'running' ? waitNoteOf(op)?.held : undefined;
}

/** Ended states whose items a stopped run may still hold (execution/settle-aborted.ts). */
const SETTLING_STATES = new Set(['cancelled', 'rollback_incomplete']);

/**
 * An aborted operation (or a rollback ended) whose items a run still held when it ended: they are
 * recorded once that run records them, or its claim's lease ends (settle-aborted.ts notes it on the
 * row). Without it, the view of a `cancelled` restore listed items `claimed` for ~90 s after a
 * worker's `kill -9`, and a new restore meanwhile was refused for a site already back (a trial).
 */
function settlingOf(op: Partial<HeldFields>, now: number) {
  const h = waitNoteOf(op)?.held;
  const until = Date.parse(h?.until ?? '');
  if (!h?.settling || !h.items || !(until > now)) return null;
  return {
    on: 'claims' as const,
    since: new Date(Date.parse(h.since ?? '') || Date.parse(h.notedAt ?? '') || now).toISOString(),
    detail:
      'It has ended, but a run still held these items when it did: their calls may be out. They are recorded when that run records them, or once its claim lease ends (until; the run stopped): restored where the registry shows it, otherwise failed with their outcome unknown. Nothing more is sent. A restore of them planned before then may find their parent still deleted.',
    items: h.items,
    until: new Date(until).toISOString(),
  };
}

/** No item outcome for this long while running or rolling back is shown as `waiting: progress`. */
export const STILL_AFTER_MS = 30_000;

/** What the rollback job wrote on the operation when it went to sleep for its restores' retries. */
interface RestoreWait {
  items?: number;
  nextRetryAt?: string;
  since?: string;
  lastError?: string | null;
  /** Items other runs held when the rollback went to sleep, and when their first lease ends. */
  held?: {
    items?: number;
    since?: string;
    until?: string;
    notedAt?: string;
    /** A running delete's chunk job a stopped process had, not its claims (it claims nothing). */
    chunk?: boolean;
    /** An ended operation's items a run still held (settle-aborted.ts). */
    settling?: boolean;
  };
}

/**
 * A rollback asleep while other runs hold items it has to restore: a delete chunk still calling
 * (it records them when its calls land) or a run whose worker stopped, which keeps them until its
 * claim lease ends (then the rollback takes them over). Shown until that lease ends or an item
 * outcome is recorded after it was noted (then the rollback is moving, and notes anew when it
 * sleeps again). Before the restore retries it may also wait for: more items, and the longer wait.
 * A running delete whose stopped run holds claimed items says so the same way (noted by the
 * reconciler), rather than nothing until 30 s without an outcome (`progress`).
 */
function heldClaimsOf(
  op: Pick<OperationRow, 'state'> & Partial<HeldFields>,
  lastProgressAt: Date | null | undefined,
  now: number,
  retry: ReturnType<typeof restoreRetryOf>,
) {
  const h = heldNoteOf(op);
  const until = Date.parse(h?.until ?? '');
  const noted = Date.parse(h?.notedAt ?? '');
  const since = Date.parse(h?.since ?? '');
  if (!h?.items || !(until > now) || Number.isNaN(noted)) return null;
  if (lastProgressAt && lastProgressAt.getTime() > noted) return null;
  const also = retry
    ? ` Besides, ${retry.items} failed restore${retry.items === 1 ? '' : 's'} wait for their retry, the next at ${retry.nextRetryAt}.`
    : '';
  return {
    on: 'claims' as const,
    since: new Date(Number.isNaN(since) ? noted : since).toISOString(),
    detail: (op.state !== 'running' ? CLAIMS_DETAIL : h.chunk ? RUN_CHUNK_DETAIL : RUN_CLAIMS_DETAIL) + also,
    items: h.items,
    until: new Date(until).toISOString(),
  };
}

const CLAIMS_DETAIL =
  'Items the rollback must restore are held by another run that has not recorded them: a delete chunk whose calls are still out records them when they land; ' +
  'a run whose worker stopped (killed, out of memory) keeps them until its claim lease ends (BLASTGATE_WORKER_LOCK_MS × 3), and the rollback takes them over then; ' +
  "an earlier run of this rollback's own, as soon as its job runs again (once the stopped worker's job lock lapses, BLASTGATE_WORKER_LOCK_MS).";

// A running delete's chunk job is the same job when it runs again (its job ID), and that run takes
// over the claims of the one before at once: what it waits for is the dead worker's job lock.
const RUN_CLAIMS_DETAIL =
  'Items of this operation are claimed by a run that has no session with PostgreSQL any more, before it recorded them: its worker process stopped (killed, out of memory), or PostgreSQL restarted and dropped the sessions (the run then stops sending). ' +
  "Its chunk job is handed out again once that worker's job lock lapses (BLASTGATE_WORKER_LOCK_MS, checked every 5 s), and the new run takes them over at once; " +
  "until is when that job lock lapses (with the 5 s check), or the claims' lease if it ends sooner or the job is not in a worker's hands any more. A delete the stopped run may have sent is sent again under the same Idempotency-Key, which the downstream applies once.";

// A chunk that claims nothing (the registry adapter's: one transaction) leaves no claim behind: its
// job does, in BullMQ, under the dead worker's job lock (stopped-holds.ts noteStoppedChunks).
const RUN_CHUNK_DETAIL =
  'A chunk of this operation was being run by a worker process that has no session with PostgreSQL any more: it stopped (killed, out of memory), or PostgreSQL restarted and dropped the sessions. Nothing of the chunk was applied (it is one transaction, undone with its session). ' +
  "Its job is handed out again once that worker's job lock lapses (until; BLASTGATE_WORKER_LOCK_MS, checked every 5 s), and the new run does these items.";

/**
 * A rollback asleep until the next of its failed restores is due for its retry (the backoff after
 * a 5xx, a timeout, …): how many wait, when the next is due, the last error. Read from the
 * operation's own row (`restore_wait`, written by the rollback job when it goes to sleep:
 * rollback-ledger.ts nextWake), which every view reads anyway: no ledger read for it, however
 * large the ledger and however often the view is polled. Shown until that retry is due: then the
 * rollback is at work again (and writes it anew if it has to wait again).
 */
function restoreRetryOf(
  op: Pick<OperationRow, 'state'> & Partial<HeldFields>,
  now: number,
  lastProgressAt: Date | null | undefined,
) {
  const w = restoreWaitOf(op);
  if (!w?.items) return null;
  const next = Date.parse(w.nextRetryAt ?? '');
  if (Number.isNaN(next)) return null;
  // Due, and out: no outcome recorded since it was due. Said as the same wait, not as nothing,
  // until its restores answer (the rollback then notes its next wait, or moves) or STILL_AFTER_MS
  // pass (then `progress` says it): against a downstream that hangs, the view went between
  // restore_retry and null every few seconds for minutes, restored 0 (two trials).
  const out = next <= now && now - next < STILL_AFTER_MS && !(lastProgressAt && lastProgressAt.getTime() > next);
  if (!(next > now) && !out) return null;
  const since = Date.parse(w.since ?? '');
  return {
    on: 'restore_retry' as const,
    since: new Date(Number.isNaN(since) ? now : since).toISOString(),
    detail: out
      ? `Restores are out now and none has answered since the retry due at ${new Date(next).toISOString()} (the rollback sends items it has not tried yet before those it retries). ${RESTORE_RETRY_DETAIL}`
      : RESTORE_RETRY_DETAIL,
    items: w.items,
    nextRetryAt: new Date(next).toISOString(),
    lastError: w.lastError ?? null,
  };
}

const RESTORE_RETRY_DETAIL =
  'Restores that failed for a reason that may pass (a 5xx, 408, 409 or 429, a timeout, a connection error) are tried again with backoff, ' +
  `${RESTORE_BACKOFF_MS / 1000} to ${(RESTORE_BACKOFF_MS * 2 ** (RESTORE_ATTEMPTS - 2)) / 1000} s apart; the rollback moves again when the next is due. ` +
  `A restore still failing after ${RESTORE_ATTEMPTS} attempts counts as not restored, and the rollback ends rollback_incomplete listing it: ` +
  'fix the downstream meanwhile, or end the rollback now (abort with endRollback: true) and roll back again later.';
