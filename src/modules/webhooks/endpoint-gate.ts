// One endpoint's share of a worker process's delivery slots. Every delivery goes through the one
// `webhooks` queue and its BLASTGATE_WEBHOOK_CONCURRENCY slots per process; unbounded, a receiver
// slower than the request deadline (each attempt holds a slot that long) and one whose retries
// pile up took every slot, and a healthy endpoint heard of events a minute late (a new-user trial).
//
// So a worker process has at most PER_ENDPOINT attempt in flight to any one endpoint. A delivery
// that finds its endpoint at that bound is parked: moved back to the delayed set without using an
// attempt (BullMQ's step-job pattern, as in worker-runtime.ts) and named on the endpoint's list in
// Redis. The process that ends an attempt to that endpoint wakes (promotes) the first one on the
// list, so a burst to a healthy endpoint goes out one after the other at the receiver's pace, not
// at a polling interval, and a slow endpoint's backlog waits in Redis, not in a slot. The list is
// shared by every process: a woken delivery may run in another process, and ending it there wakes
// the next. A wake that is lost (a crash between the pop and the promote, Redis down) costs at
// most `parkMs`: a parked delivery comes back by itself then, and parks again if it must.
//
// The list is kept in event order (a sorted set scored by delivery ID), and the one woken is the
// earliest parked: woken first-parked-first, a burst (a redelivery of what failed while a receiver
// was down) reached a healthy receiver as "halted, rolled_back, wave_completed, started" (a trial).
// A delivery with an earlier one of its endpoint not yet tried parks too (runtime.ts): the earlier
// one's end wakes it.
//
// The bound is per process: N worker processes may have N attempts in flight to one endpoint.
import { DelayedError, Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * Attempts in flight to one endpoint from one worker process. One: a healthy receiver answers in
 * milliseconds, so one at a time still sends many a second (Slack's incoming webhooks accept about
 * one a second anyway), and a receiver that hangs holds a single slot.
 */
export const PER_ENDPOINT = 1;

export interface EndpointGate {
  /** Takes a slot of `endpoint` if it has one free. */
  enter(endpoint: string): boolean;
  /** Gives the slot back and wakes the endpoint's first parked delivery. */
  leave(endpoint: string): Promise<void>;
  /**
   * Parks `job` (delivery `order`, its ID) and throws DelayedError, which BullMQ expects: its
   * endpoint is at its bound, or `behind` says an earlier delivery is not tried yet (asked again
   * once parked: that one may have ended in between, finding no one to wake).
   */
  park(
    job: Job,
    token: string | undefined,
    endpoint: string,
    order: number,
    behind?: () => Promise<boolean>,
  ): Promise<never>;
}

export function endpointGate(o: { redis: Redis; queue: Queue; prefix: string; parkMs: number }): EndpointGate {
  const inFlight = new Map<string, number>();
  const room = (endpoint: string) => (inFlight.get(endpoint) ?? 0) < PER_ENDPOINT;
  // Not under `<prefix>:webhooks:`, where BullMQ keeps the queue's keys and one per job ID.
  // A sorted set; the list an older version kept was `webhook-parked:` (another name: no WRONGTYPE
  // while both run, its entries come back by themselves).
  const key = (endpoint: string) => `${o.prefix}:webhook-parked-in-order:${endpoint}`;

  async function wake(endpoint: string) {
    for (;;) {
      const popped = await o.redis.zpopmin(key(endpoint));
      const entry = popped[0];
      if (entry === undefined) return;
      const [id, made] = entry.split('|') as [string, string];
      const job = await Job.fromId(o.queue, id);
      // Done already, or it made an attempt since it was parked (it came back by itself): it may be
      // waiting out a retry's backoff now, which a promote would cut short. A later entry names it
      // if it parked again.
      if (!job || job.attemptsMade !== Number(made)) continue;
      try {
        await job.promote();
        return;
      } catch {
        // Not delayed any more (it came back by itself and is waiting or running): the next one.
      }
    }
  }

  return {
    enter(endpoint) {
      if (!room(endpoint)) return false;
      inFlight.set(endpoint, (inFlight.get(endpoint) ?? 0) + 1);
      return true;
    },
    async leave(endpoint) {
      const n = (inFlight.get(endpoint) ?? 1) - 1;
      if (n > 0) inFlight.set(endpoint, n);
      else inFlight.delete(endpoint);
      await wake(endpoint);
    },
    async park(job, token, endpoint, order, behind) {
      // Jittered: a backlog that comes back by itself does not all come back at once.
      await job.moveToDelayed(Date.now() + o.parkMs + Math.floor((Math.random() * o.parkMs) / 4), token);
      try {
        const k = key(endpoint);
        // The TTL only drops a list nobody parks on any more; its deliveries came back by themselves.
        await o.redis
          .multi()
          .zadd(k, order, `${job.id}|${job.attemptsMade}`)
          .pexpire(k, 4 * o.parkMs)
          .exec();
        // The attempt ahead of it may have ended between enter() and the add, finding no one to wake.
        if (behind ? !(await behind()) && room(endpoint) : room(endpoint)) await wake(endpoint);
      } catch {
        // Parked all the same: it comes back by itself after parkMs.
      }
      throw new DelayedError();
    },
  };
}
