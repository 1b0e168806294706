// What a worker consults before every destructive call: is this operation still running this
// wave? Kept current two ways: a Redis pub/sub notice the instant a halt commits (latency), and a
// Postgres poll of the operations with work in flight (in case a notice is lost, e.g. a Redis
// restart). Fails closed: an operation never read, or a failed poll, means "do not run".
import type pg from 'pg';
import type { Redis } from 'ioredis';

interface Seen {
  state: string;
  wave: number | null;
  frozen: boolean;
  at: number;
}

export class HaltWatch {
  private seen = new Map<string, Seen>();
  private noticeAt = new Map<string, number>();
  private active = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly subscriber: Redis,
    private readonly channel: string,
    private readonly pollMs = 100,
  ) {}

  async start() {
    this.subscriber.on('message', (_channel: string, opId: string) => {
      this.noticeAt.set(opId, Date.now());
      void this.refresh([opId]).catch(() => undefined);
    });
    await this.subscriber.subscribe(this.channel);
    this.timer = setInterval(() => {
      const ids = [...this.active.keys()];
      if (ids.length) void this.refresh(ids).catch(() => this.seen.clear());
    }, this.pollMs);
    this.timer.unref();
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
    } else this.active.set(opId, n);
  }

  /** True only if the operation is running `wave`, unfrozen, with no halt notice since `since`. */
  canRun(opId: string, wave: number, since: number): boolean {
    const s = this.seen.get(opId);
    if (!s || s.state !== 'running' || s.wave !== wave || s.frozen) return false;
    const notice = this.noticeAt.get(opId);
    return notice === undefined || notice < since;
  }

  private async refresh(ids: string[]) {
    const r = await this.pool.query<{ id: string; state: string; current_wave: number | null; frozen: boolean }>(
      `SELECT id, state, current_wave, coalesce((SELECT (value->>'frozen')::boolean FROM settings WHERE key = 'freeze'), false) AS frozen
       FROM operations WHERE id = ANY($1::text[])`,
      [ids],
    );
    const now = Date.now();
    for (const row of r.rows)
      this.seen.set(row.id, { state: row.state, wave: row.current_wave, frozen: row.frozen, at: now });
  }
}
