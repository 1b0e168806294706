// What a worker consults before every destructive call: is this operation still running this
// wave? Kept current two ways: a Redis pub/sub notice the instant a halt commits (latency), and a
// Postgres poll of the operations with work in flight (in case a notice is lost, e.g. a Redis
// restart). Fails closed: an operation never read, a failed poll, or a reading older than a few
// poll intervals (the process was stopped, or the database stopped answering) means "do not run".
import type pg from 'pg';
import type { Redis } from 'ioredis';
import { mayExecute, type OpState } from '../operations/lifecycle.ts';

interface Seen {
  state: OpState;
  wave: number | null;
  frozen: boolean;
  /** When the query that produced this reading started: an older reading never replaces a newer one. */
  at: number;
}

/** SQL: whether the global freeze is in effect (freeze-routes.ts writes it). */
export const FROZEN_SQL = `coalesce((SELECT (value->>'frozen')::boolean FROM settings WHERE key = 'freeze'), false)`;

/** A reading older than this many poll intervals no longer allows a destructive call. */
const FRESH_POLLS = 10;
const MIN_FRESH_MS = 1_000;

export class HaltWatch {
  private seen = new Map<string, Seen>();
  private noticeAt = new Map<string, number>();
  private active = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private readonly freshMs: number;
  private stopping = false;

  constructor(
    private readonly pool: Pick<pg.Pool, 'query'>,
    private readonly subscriber: Pick<Redis, 'on' | 'subscribe' | 'unsubscribe'>,
    private readonly channel: string,
    private readonly pollMs = 100,
    private readonly clock: () => number = Date.now,
  ) {
    this.freshMs = Math.max(MIN_FRESH_MS, pollMs * FRESH_POLLS);
  }

  async start() {
    this.subscriber.on('message', (_channel: string, opId: string) => {
      this.noticeAt.set(opId, this.clock());
      void this.refresh([opId]).catch(() => this.seen.delete(opId));
    });
    await this.subscriber.subscribe(this.channel);
    this.timer = setInterval(() => {
      const ids = [...this.active.keys()];
      if (ids.length) void this.refresh(ids).catch(() => this.seen.clear());
    }, this.pollMs);
    this.timer.unref();
  }

  /**
   * The process is shutting down (Ctrl-C, SIGTERM): no destructive call may start from now on, as
   * if every operation had halted here. The calls in flight finish and are recorded, and the
   * chunks hand their unsent items back (requeued while the operation still runs), so that another
   * worker, or the next start, carries on at once. Before, a shutdown waited for whole chunks:
   * deletes went on for the whole shutdown window after the operator's Ctrl-C (a trial).
   */
  shutDown() {
    this.stopping = true;
  }

  /** Whether shutDown() was called: a rollback run hands its batch back and stops (rollback.ts). */
  get shuttingDown(): boolean {
    return this.stopping;
  }

  async stop() {
    if (this.timer) clearInterval(this.timer);
    await this.subscriber.unsubscribe(this.channel).catch(() => undefined);
  }

  /** Marks an operation as having work in flight here, and reads its state now. */
  async track(opId: string) {
    this.active.set(opId, (this.active.get(opId) ?? 0) + 1);
    // Always read fresh: a chunk that starts just after a halt must see it before its first call.
    await this.refresh([opId]);
  }

  untrack(opId: string) {
    const n = (this.active.get(opId) ?? 1) - 1;
    if (n <= 0) {
      this.active.delete(opId);
      this.seen.delete(opId);
      this.noticeAt.delete(opId);
    } else this.active.set(opId, n);
  }

  /**
   * True only if a fresh reading says the operation is running `wave` unfrozen, and no halt
   * notice arrived since `since`.
   */
  canRun(opId: string, wave: number, since: number): boolean {
    return !this.stopping && this.runs(opId, wave, since);
  }

  /** Whether the operation itself still runs `wave` (this process may be shutting down). */
  runs(opId: string, wave: number, since: number): boolean {
    const s = this.seen.get(opId);
    if (!s || !mayExecute(s) || s.wave !== wave || this.clock() - s.at > this.freshMs) return false;
    const notice = this.noticeAt.get(opId);
    return notice === undefined || notice < since;
  }

  /**
   * True only if a fresh reading says the operation is rolling back: an operator who ends the
   * rollback (abort with endRollback) stops its restores within a poll, not after the batch.
   */
  stillRollingBack(opId: string): boolean {
    const s = this.seen.get(opId);
    return !!s && s.state === 'rolling_back' && this.clock() - s.at <= this.freshMs;
  }

  private async refresh(ids: string[]) {
    const started = this.clock();
    const r = await this.pool.query<{ id: string; state: OpState; current_wave: number | null; frozen: boolean }>(
      `SELECT id, state, current_wave, ${FROZEN_SQL} AS frozen
       FROM operations WHERE id = ANY($1::text[])`,
      [ids],
    );
    for (const row of r.rows) {
      const prev = this.seen.get(row.id);
      if (prev && prev.at > started) continue;
      this.seen.set(row.id, { state: row.state, wave: row.current_wave, frozen: row.frozen, at: started });
    }
  }
}
