// The destructive calls one worker process has in flight for one operation, shared by every chunk
// of that operation the process runs. The rollout's `concurrency` is the operation's budget here,
// not each chunk's: with it per chunk, a process running 4 chunks of an operation made up to 4 ×
// `concurrency` calls at once, and while one chunk snapshotted, marked or recorded, its share of
// the calls sat idle although the others had items ready. Shared, a chunk whose calls are ready
// takes the slots the others are not using, and the downstream never sees more than `concurrency`
// calls of the operation from this process (halt overshoot is bounded by that, promise 5).
//
// Waiting calls are served by their chunk's rank (the order the chunks asked for one), first come
// first served within a chunk. Served in plain arrival order, the calls of all the chunks
// interleave, so the chunks finish their calls together and then all snapshot, mark and record at
// once while no call goes out (the efficiency bench showed a call-free gap of ~150 ms every
// ~800 ms). By rank, the oldest chunk takes the slots it can use and finishes first, and its
// successor prepares while the others still call: the slots stay busy.
//
// Per process, by design: N worker processes make at most N × `concurrency` calls at once.

interface Waiter {
  rank: number;
  go: () => void;
}

interface Budget {
  active: number;
  /** Sorted by rank; equal ranks in arrival order. */
  waiting: Waiter[];
}

export interface CallSlots {
  /**
   * Runs `fn` once the operation has fewer than `capacity` calls in flight here. Waiting calls go
   * in by `rank` (lower first; a chunk takes one from rank()), in arrival order within a rank.
   */
  run<T>(opId: string, capacity: number, fn: () => Promise<T>, rank?: number): Promise<T>;
  /** A rank for a chunk: later than every rank handed out before. */
  rank(): number;
  /** For one chunk: runs each of its calls in the operation's budget, at a rank taken now. */
  forChunk(opId: string, capacity: number): <T>(call: () => Promise<T>) => Promise<T>;
  /** Calls in flight and waiting, per operation (for tests and metrics). */
  inFlight(opId: string): { active: number; waiting: number };
}

export function callSlots(): CallSlots {
  const budgets = new Map<string, Budget>();
  let ranks = 0;

  const acquire = (opId: string, capacity: number, rank: number): Promise<void> | undefined => {
    let b = budgets.get(opId);
    if (!b) budgets.set(opId, (b = { active: 0, waiting: [] }));
    if (b.active < Math.max(1, Math.floor(capacity))) {
      b.active++;
      return undefined;
    }
    return new Promise<void>((go) => {
      // After the last waiter of a rank not above this one: a short list (the calls a process's
      // chunks have ready), searched from the end where new ranks land.
      let at = b.waiting.length;
      while (at > 0 && b.waiting[at - 1]!.rank > rank) at--;
      b.waiting.splice(at, 0, { rank, go });
    });
  };

  const release = (opId: string) => {
    const b = budgets.get(opId);
    if (!b) return;
    // The slot passes straight to the next waiter (active stays the same), so nobody overtakes it.
    const next = b.waiting.shift();
    if (next) next.go();
    else if (--b.active === 0) budgets.delete(opId);
  };

  const slots: CallSlots = {
    async run(opId, capacity, fn, rank = Number.MAX_SAFE_INTEGER) {
      const wait = acquire(opId, capacity, rank);
      if (wait) await wait;
      try {
        return await fn();
      } finally {
        release(opId);
      }
    },
    rank: () => ++ranks,
    forChunk(opId, capacity) {
      const rank = slots.rank();
      return (call) => slots.run(opId, capacity, call, rank);
    },
    inFlight(opId) {
      const b = budgets.get(opId);
      return { active: b?.active ?? 0, waiting: b?.waiting.length ?? 0 };
    },
  };
  return slots;
}
