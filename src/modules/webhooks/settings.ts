// How the workers deliver webhooks (config.ts reads them from BLASTGATE_WEBHOOK_* variables).
export interface WebhookSettings {
  /** Attempts per delivery (the first included) before it is recorded failed. */
  attempts: number;
  /** First retry delay; each next one doubles (BullMQ exponential backoff). */
  backoffMs: number;
  /** Deadline of one POST, connect to last byte. */
  timeoutMs: number;
  /** How often the dispatcher looks for new audit events. */
  pollMs: number;
  /** Deliveries in flight per worker process, at most one per endpoint (endpoint-gate.ts). */
  concurrency: number;
}

// 8 attempts 1 s apart doubling: the last retry comes about two minutes after the event, which
// rides out a receiver's restart; one that is down longer has its deliveries recorded failed.
export const DEFAULT_WEBHOOK_SETTINGS: WebhookSettings = {
  attempts: 8,
  backoffMs: 1_000,
  timeoutMs: 10_000,
  pollMs: 1_000,
  concurrency: 4,
};
