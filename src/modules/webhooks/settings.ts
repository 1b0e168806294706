// How the workers deliver webhooks (config.ts reads them from BLASTGATE_WEBHOOK_* variables).
export interface WebhookSettings {
  /** Attempts per delivery (the first included) before it is recorded failed. */
  attempts: number;
  /** First retry delay; each next one doubles, up to backoffMaxMs. */
  backoffMs: number;
  /** The longest delay between two attempts (default DEFAULT_WEBHOOK_SETTINGS.backoffMaxMs). */
  backoffMaxMs?: number;
  /** Deadline of one POST, connect to last byte. */
  timeoutMs: number;
  /** How often the dispatcher looks for new audit events. */
  pollMs: number;
  /** Deliveries in flight per worker process, at most one per endpoint (endpoint-gate.ts). */
  concurrency: number;
}

// 16 attempts, 1 s apart doubling up to 15 minutes: the last about 1 h 32 min after the event
// (retryWindowMs). Doubling without a cap, the 8 attempts of before ended two minutes after it: a
// receiver down for a deploy or a restart of its host lost its events for good (a new-user trial).
// One down longer still has them recorded failed; an admin sends them again (redeliver-route.ts).
export const DEFAULT_WEBHOOK_SETTINGS = {
  attempts: 16,
  backoffMs: 1_000,
  backoffMaxMs: 15 * 60_000,
  timeoutMs: 10_000,
  pollMs: 1_000,
  concurrency: 4,
} satisfies Required<WebhookSettings>;

/** The BullMQ backoff type of a delivery job (the worker's backoffStrategy computes it). */
export const CAPPED_BACKOFF = 'capped-exponential';

/** The delay before retry `attemptsMade` (1 after the first attempt failed): doubling, capped. */
export function retryDelayMs(attemptsMade: number, s: Pick<WebhookSettings, 'backoffMs' | 'backoffMaxMs'>): number {
  const max = s.backoffMaxMs ?? DEFAULT_WEBHOOK_SETTINGS.backoffMaxMs;
  // 2^30 and beyond only overflows towards the cap.
  const doubling = s.backoffMs * 2 ** Math.min(Math.max(attemptsMade - 1, 0), 30);
  return Math.min(max, doubling);
}

/** From the first attempt to the last, when every attempt fails at once (no request time). */
export function retryWindowMs(s: Pick<WebhookSettings, 'attempts' | 'backoffMs' | 'backoffMaxMs'>): number {
  let total = 0;
  for (let made = 1; made < s.attempts; made++) total += retryDelayMs(made, s);
  return total;
}
