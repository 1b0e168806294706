// A small, bounded, short-lived memo for reads that are costly and polled: the same key within
// `ttlMs` gets the value computed first (or the computation still under way), so a dashboard
// polling one operation hundreds of times a second costs one computation per ttl per process.
// `costFactor`: a value that took long to compute is kept longer (at least factor × its time), so
// that a read which costs more than expected (a ledger scan grown with the operation) takes at most
// 1/factor of the time of a connection however often it is polled.

export interface Memo<T> {
  get(key: string, compute: () => Promise<T>): Promise<T>;
}

export function memo<T>(o: { ttlMs: number; max: number; clock?: () => number; costFactor?: number }): Memo<T> {
  const clock = o.clock ?? Date.now;
  const entries = new Map<string, { at: number; ttl: number; value: Promise<T> }>();
  return {
    get(key, compute) {
      const now = clock();
      const hit = entries.get(key);
      if (hit && now - hit.at < hit.ttl) return hit.value;
      entries.delete(key);
      // Oldest first (Map keeps insertion order): drop it when full.
      if (entries.size >= o.max) entries.delete(entries.keys().next().value!);
      const value = compute();
      const entry = { at: now, ttl: o.ttlMs, value };
      entries.set(key, entry);
      if (o.costFactor)
        void value.then(
          () => {
            entry.ttl = Math.max(o.ttlMs, o.costFactor! * (clock() - now));
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
