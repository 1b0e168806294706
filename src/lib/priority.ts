// Lowering a process's own CPU priority (raising its nice value), never raising it: a process
// started at a lower priority than asked for (`nice -n 15 npm run worker`) keeps it.
//
// On Linux a nice value belongs to a thread, and setpriority() on the process ID changes the main
// thread only: V8's garbage-collection helpers and libuv's pool, started before, would keep
// competing at the old priority. So every thread of the process is lowered (/proc/self/task);
// threads started afterwards inherit the value from the thread that starts them.
import { readdirSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

export interface Lowered {
  /** The main thread's nice value afterwards. */
  now: number;
  /** Why a thread could not be lowered (the first such error), if any. */
  problem?: Error;
}

export function lowerPriority(nice: number, threads: () => number[] = ownThreads): Lowered {
  let problem: Error | undefined;
  for (const tid of threads()) {
    try {
      // A thread that ended meanwhile, or one already lower, is left as it is.
      if (getPriority(tid) < nice) setPriority(tid, nice);
    } catch (err) {
      // Node's SystemError carries the errno name in `info.code`.
      const e = err as { code?: string; info?: { code?: string } };
      if ((e.info?.code ?? e.code) !== 'ESRCH') problem ??= err as Error;
    }
  }
  return { now: getPriority(), ...(problem ? { problem } : {}) };
}

/** This process's thread IDs on Linux; elsewhere the process itself (0: the calling process). */
function ownThreads(): number[] {
  try {
    return readdirSync('/proc/self/task').map(Number);
  } catch {
    return [0];
  }
}
