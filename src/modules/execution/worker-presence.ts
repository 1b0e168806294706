// Whether any worker process is connected to the work queue, as the API sees it. An API started
// without workers (BLASTGATE_WORKERS_IN_PROCESS=false) and no `npm run worker` beside it, or whose
// workers all died, accepted a start and then showed `running` with nothing moving and no reason.
// BullMQ names each worker's connection after its queue, so Redis's CLIENT LIST tells: no state
// of our own to keep, and a worker killed with SIGKILL drops out as soon as its socket closes.
import type { Queue } from 'bullmq';

/** How long one count is reused: a view polled hundreds of times a second asks Redis once per this. */
const CHECK_EVERY_MS = 2_000;

export interface WorkerPresence {
  /** Since when no worker was seen (the first check that found none), or null: some are, or unknown. */
  noneSince(): Promise<Date | null>;
}

export function workerPresence(
  queue: Pick<Queue, 'getWorkersCount'>,
  o: { everyMs?: number; now?: () => number } = {},
): WorkerPresence {
  const every = o.everyMs ?? CHECK_EVERY_MS;
  const now = o.now ?? Date.now;
  let checkedAt = -Infinity;
  let since: Date | null = null;
  let pending: Promise<void> | null = null;
  const check = async () => {
    try {
      const n = await queue.getWorkersCount();
      since = n > 0 ? null : (since ?? new Date(now()));
    } catch {
      // Redis unreachable or CLIENT LIST refused (a managed Redis may forbid it): unknown, so
      // nothing is claimed; an unreachable Redis is reported as such (queueDownSince).
      since = null;
    } finally {
      checkedAt = now();
      pending = null;
    }
  };
  return {
    async noneSince() {
      if (now() - checkedAt >= every) await (pending ??= check());
      return since;
    },
  };
}
