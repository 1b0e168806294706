// The destructive calls one worker process has in flight for one operation, shared by every chunk
// of that operation the process runs. The rollout's `concurrency` is the operation's budget here,
// not each chunk's: with it per chunk, a process running 4 chunks of an operation made up to 4 ×
// `concurrency` calls at once, and while one chunk snapshotted, marked or recorded, its share of
// the calls sat idle although the others had items ready. Shared, a chunk whose calls are ready
// takes the slots the others are not using, and the downstream never sees more than `concurrency`
// calls of the operation from this process (halt overshoot is bounded by that, promise 5).
//
// Per process, by design: N worker processes make at most N × `concurrency` calls at once.

interface Budget {
  active: number;
  waiting: (() => void)[];
}

export interface CallSlots {
  /** Runs `fn` once the operation has fewer than `capacity` calls in flight here (first come, first served). */
  run<T>(opId: string, capacity: number, fn: () => Promise<T>): Promise<T>;
  /** Calls in flight and waiting, per operation (for tests and metrics). */
  inFlight(opId: string): { active: number; waiting: number };
}

export function callSlots(): CallSlots {
  const budgets = new Map<string, Budget>();

  const acquire = (opId: string, capacity: number): Promise<void> | undefined => {
    let b = budgets.get(opId);
    if (!b) budgets.set(opId, (b = { active: 0, waiting: [] }));
    if (b.active < Math.max(1, Math.floor(capacity))) {
      b.active++;
      return undefined;
    }
    return new Promise<void>((resolve) => b.waiting.push(resolve));
  };

  const release = (opId: string) => {
    const b = budgets.get(opId);
    if (!b) return;
    // The slot passes straight to the next waiter (active stays the same), so nobody overtakes it.
    const next = b.waiting.shift();
    if (next) next();
    else if (--b.active === 0) budgets.delete(opId);
  };

  return {
    async run(opId, capacity, fn) {
      const wait = acquire(opId, capacity);
      if (wait) await wait;
      try {
        return await fn();
      } finally {
        release(opId);
      }
    },
    inFlight(opId) {
      const b = budgets.get(opId);
      return { active: b?.active ?? 0, waiting: b?.waiting.length ?? 0 };
    },
  };
}
