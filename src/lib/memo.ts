// A small, bounded, short-lived memo for reads that are costly and polled: the same key within
// `ttlMs` gets the value computed first (or the computation still under way), so a dashboard
// polling one operation hundreds of times a second costs one computation per ttl per process.
// `costFactor`: a value that took long to compute is kept longer (at least factor × its time), so
// that a read which costs more than expected (a ledger scan grown with the operation) takes at most
// 1/factor of the time of a connection however often it is polled.
// `staleMs`: for that long after a key's ttl ends, readers get its last value while one new
// computation runs, instead of all waiting for it (a 1M-row scan under load: ~0.6 s at p99). A
// value a reader gets is then at most ttl + staleMs old. A new key (a changed state, when the state
// is part of the key) has no old value, so it is always computed; so is a key read after staleMs.

export interface Memo<T> {
  get(key: string, compute: () => Promise<T>): Promise<T>;
}

export function memo<T>(o: {
  ttlMs: number;
  max: number;
  clock?: () => number;
  costFactor?: number;
  staleMs?: number;
}): Memo<T> {
  const clock = o.clock ?? Date.now;
  interface Entry {
    at: number;
    ttl: number;
    value: Promise<T>;
    /** The value computed last, while a new one is under way (`staleMs`). */
    settled?: Promise<T>;
    refreshing?: boolean;
  }
  const entries = new Map<string, Entry>();
  // How long a value computed from `started` until now is kept.
  const ttlAfter = (started: number) =>
    o.costFactor ? Math.max(o.ttlMs, o.costFactor * (clock() - started)) : o.ttlMs;
  return {
    get(key, compute) {
      const now = clock();
      const hit = entries.get(key);
      if (hit && now - hit.at < hit.ttl) return hit.value;
      if (hit?.settled && o.staleMs && now - hit.at < hit.ttl + o.staleMs) {
        if (!hit.refreshing) {
          hit.refreshing = true;
          const next = compute();
          next.then(
            () => {
              Object.assign(hit, { at: now, ttl: ttlAfter(now), value: next, settled: next, refreshing: false });
            },
            () => {
              hit.refreshing = false;
            },
          );
        }
        return hit.settled;
      }
      entries.delete(key);
      // Oldest first (Map keeps insertion order): drop it when full.
      if (entries.size >= o.max) entries.delete(entries.keys().next().value!);
      const value = compute();
      const entry: Entry = { at: now, ttl: o.ttlMs, value };
      entries.set(key, entry);
      void value.then(
        () => {
          entry.ttl = ttlAfter(now);
          entry.settled = value;
        },
        () => undefined,
      );
      // A failure is not kept: the next read tries again.
      value.catch(() => {
        if (entries.get(key)?.value === value) entries.delete(key);
      });
      return value;
    },
  };
}

/**
 * For a count over an operation's ledger that a polled read needs (the view's per-wave counts, the
 * event stream's restores), keyed by the operation's version: once a second, longer when it takes
 * long, readers given the last count while a new one runs.
 */
export const LEDGER_COUNT_MEMO = { ttlMs: 1_000, max: 256, costFactor: 4, staleMs: 2_000 };
/** The other queue prefixes a no-worker wait names (plugins/queues.ts): one settings read per 2 s. */
export const OTHER_PREFIXES_MEMO = { ttlMs: 2_000, max: 1 };
