// Whether any worker process is connected to the work queue, as the API sees it. An API started
// without workers (BLASTGATE_WORKERS_IN_PROCESS=false) and no `npm run worker` beside it, or whose
// workers all died, accepted a start and then showed `running` with nothing moving and no reason.
// BullMQ names each worker's connection after its queue, so Redis's CLIENT LIST tells: no state
// of our own to keep, and a worker killed with SIGKILL drops out as soon as its socket closes.
import type { Queue } from 'bullmq';

/** How long one count is reused: a view polled hundreds of times a second asks Redis once per this. */
const CHECK_EVERY_MS = 2_000;
/**
 * How long a count may go unanswered before Redis is taken for hung, its connection open and
 * nothing answering (a frozen host, a partition), and the longest a view waits for the count: the
 * API's commands give up only after 5 s (plugins/redis.ts), and each view waited that long, then
 * said nothing (`waiting: null`) while nothing moved (a probe froze Redis with SIGSTOP).
 */
export const HUNG_AFTER_MS = 1_000;
const TIMED_OUT = /^Command timed out$/;

export interface WorkerPresence {
  /** Since when no worker was seen (the first check that found none), or null: some are, or unknown. */
  noneSince(): Promise<Date | null>;
  /**
   * Since when Redis has not answered with its connection open: a count out for HUNG_AFTER_MS or
   * more, or the last one timed out, since the first such count went out; null once one answers.
   */
  hungSince(): Date | null;
}

export function workerPresence(
  queue: Pick<Queue, 'getWorkersCount'>,
  o: { everyMs?: number; hungAfterMs?: number; now?: () => number } = {},
): WorkerPresence {
  const every = o.everyMs ?? CHECK_EVERY_MS;
  const hungAfter = o.hungAfterMs ?? HUNG_AFTER_MS;
  const now = o.now ?? Date.now;
  let checkedAt = -Infinity;
  let since: Date | null = null;
  let hung: Date | null = null;
  let sentAt = 0;
  let pending: Promise<void> | null = null;
  /** The count still out when a view stopped waiting for it. */
  let overdue: Promise<void> | null = null;
  const check = async () => {
    const sent = (sentAt = now());
    try {
      const n = await queue.getWorkersCount();
      since = n > 0 ? null : (since ?? new Date(now()));
      hung = null;
    } catch (err) {
      // Redis unreachable or CLIENT LIST refused (a managed Redis may forbid it): unknown, so
      // nothing is claimed; an unreachable Redis is reported as such (queueDownSince), a hung one
      // here.
      since = null;
      hung = TIMED_OUT.test((err as Error)?.message ?? '') ? (hung ?? new Date(sent)) : null;
    } finally {
      checkedAt = now();
      pending = null;
    }
  };
  return {
    async noneSince() {
      if (now() - checkedAt >= every) {
        const out = (pending ??= check());
        let timer: NodeJS.Timeout | undefined;
        const late = await Promise.race([
          out.then(() => false),
          new Promise<boolean>((r) => (timer = setTimeout(() => r(true), hungAfter))),
        ]);
        clearTimeout(timer);
        // (By the timer, not the clock: the two may disagree by a millisecond.)
        if (late && pending === out) overdue = out;
      }
      return since;
    },
    hungSince() {
      if (hung) return hung;
      return pending && (overdue === pending || now() - sentAt >= hungAfter) ? new Date(sentAt) : null;
    },
  };
}
