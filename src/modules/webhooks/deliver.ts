// One delivery attempt: read the delivery and its endpoint, sign, POST with a deadline, record the
// outcome on the delivery row. A failure throws, so BullMQ retries it with backoff; the last
// attempt marks the row `failed`. Nothing here touches an operation: a slow or dead receiver only
// holds a webhook job, never the engine.
import type http from 'node:http';
import type pg from 'pg';
import { UnrecoverableError } from 'bullmq';
import { Webhook } from 'standardwebhooks';
import { guardedLookup, type HostAllowlist } from '../adapters/host-allowlist.ts';
import { createAgent, sendRequest } from '../adapters/http-transport.ts';
import type { WebhookEvent } from './events.ts';
import { openSecret } from './secrets.ts';
import { slackMessage } from './slack.ts';
import { webhookUrlProblem } from './url-policy.ts';

export interface DeliverDeps {
  pool: pg.Pool;
  masterKey: Buffer;
  allow: HostAllowlist;
  /** Whole-request deadline of one POST (connect to last byte). */
  timeoutMs: number;
  agents: { http: http.Agent; https: http.Agent };
}

export const createAgents = () => ({ http: createAgent('http:'), https: createAgent('https:') });

/** What one attempt came to (the processor decides on retries). */
export type Attempt =
  'skipped' | { ok: true; status: number } | { ok: false; error: string; status: number | null; retry: boolean };

// A receiver's error text is stored and shown to admins: bounded, one line.
const short = (s: string) => s.replace(/\s+/g, ' ').slice(0, 300);

// An attempt is recorded also when its delivery was cancelled while it was out (the endpoint deleted
// or disabled meanwhile): the POST was sent, and the log showed `attempts: 0` for it (a trial). One
// the receiver took (2xx) is delivered, since it was; a failed one stays cancelled, saying both.
// `counted`: the POST was counted before it went out (markSent), so the outcome adds no attempt.
async function record(pool: pg.Pool, id: string, a: Sent, final: boolean) {
  const add = a.counted ? 0 : 1;
  if (a.ok) {
    await pool.query(
      `UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + ${add}, last_error = NULL,
              last_status_code = $2, delivered_at = now(), updated_at = now()
        WHERE id = $1 AND status IN ('pending', 'cancelled')`,
      [id, a.status],
    );
    return;
  }
  await pool.query(
    `UPDATE webhook_deliveries SET attempts = attempts + ${add}, last_status_code = $2,
            last_error = CASE WHEN status = 'cancelled'
              THEN left(coalesce(last_error, 'cancelled') || '; the attempt then in flight: ' || $3, 500) ELSE $3 END,
            status = CASE WHEN status = 'pending' AND $4::boolean THEN 'failed' ELSE status END,
            failed_at = CASE WHEN status = 'pending' AND $4::boolean THEN now() ELSE failed_at END, updated_at = now()
      WHERE id = $1 AND status IN ('pending', 'cancelled')`,
    [id, a.status, a.error, final],
  );
}

/**
 * Counts a POST before it goes out, as a destructive call gets its mark before it is sent: a POST
 * out when the process died (kill -9, a crash) was never counted, and after the restart its
 * receiver had one POST more than the delivery's `attempts` said (5 for 4, a new-user trial). Once
 * counted, a POST whose outcome never comes is still in the count, and the delivery says so until
 * the outcome replaces it. Throws when it cannot be counted: then nothing is sent.
 */
async function markSent(pool: pg.Pool, id: string) {
  await pool.query(
    `UPDATE webhook_deliveries SET attempts = attempts + 1, updated_at = now(),
            last_error = CASE WHEN status = 'pending' THEN $2 ELSE last_error END
      WHERE id = $1 AND status IN ('pending', 'cancelled')`,
    [
      id,
      `a POST went out at ${new Date().toISOString()} and has not been answered yet (if this stays past its timeout, the process that sent it stopped before recording the outcome)`,
    ],
  );
}

/** An attempt's outcome, and whether its POST was counted when it went out. */
type Sent = Exclude<Attempt, 'skipped'> & { counted: boolean };

/**
 * Sends delivery `id` once. The delivery's own count of attempts decides whether this is its last
 * (`maxAttempts`, BLASTGATE_WEBHOOK_ATTEMPTS), not the job's: a job's attempts are also used up by
 * runs that sent nothing (PostgreSQL down before the POST), and a delivery re-queued after its job
 * ran out starts a job of its own. Counted by the job, an outage during retries gave a receiver 6
 * POSTs recorded `failed`, or 15 (a trial).
 */
export async function deliverOnce(deps: DeliverDeps, id: string, maxAttempts: number): Promise<Attempt> {
  const r = await deps.pool.query(
    `SELECT d.status, d.attempts, d.attempt_base, d.event_id, d.payload, e.id AS endpoint_id, e.url, e.format, e.enabled, e.deleted_at, e.secret_sealed
       FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1`,
    [id],
  );
  const row = r.rows[0];
  // Delivered, failed or cancelled already (a repeated job): nothing to do.
  if (!row || row.status !== 'pending') return 'skipped';
  if (!row.enabled || row.deleted_at) {
    await deps.pool.query(
      `UPDATE webhook_deliveries SET status = 'cancelled', last_error = $2, updated_at = now() WHERE id = $1 AND status = 'pending'`,
      [id, row.deleted_at ? 'endpoint deleted' : 'endpoint disabled'],
    );
    return 'skipped';
  }
  // This series' attempts: a redelivery begins a new one (attempt_base), `attempts` counts them all.
  const final = (row.attempts as number) - (row.attempt_base as number) + 1 >= maxAttempts;
  const sent = await attempt(deps, id, row);
  await record(deps.pool, id, sent, final || (!sent.ok && !sent.retry));
  const { counted: _, ...outcome } = sent;
  // Its last attempt failed: the job stops too (its retries would find the delivery failed).
  return !outcome.ok && final ? { ...outcome, retry: false } : outcome;
}

async function attempt(deps: DeliverDeps, id: string, row: Record<string, unknown>): Promise<Sent> {
  // The allow-list may have changed since the endpoint was registered: checked on every attempt.
  const problem = webhookUrlProblem(row.url as string, deps.allow);
  if (problem) return { ok: false, error: short(problem.message), status: null, retry: false, counted: false };
  const url = new URL(row.url as string);
  const event = row.payload as WebhookEvent['body'];
  const body = JSON.stringify(row.format === 'slack' ? slackMessage(event) : event);
  let secret: string;
  try {
    secret = openSecret(deps.masterKey, row.endpoint_id as string, row.secret_sealed as Buffer);
  } catch {
    // Sealed under another master key: no retry can fix that; rotating the secret does.
    const error = 'cannot open the signing secret (sealed under another BLASTGATE_SNAPSHOT_KEY): rotate it';
    return { ok: false, error, status: null, retry: false, counted: false };
  }
  const now = new Date();
  const msgId = row.event_id as string;
  const headers = {
    'webhook-id': msgId,
    'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign(msgId, now, body),
    'user-agent': 'blastgate-webhooks',
  };
  await markSent(deps.pool, id);
  try {
    const res = await sendRequest(
      url.protocol === 'https:' ? deps.agents.https : deps.agents.http,
      url,
      { method: 'POST', path: `${url.pathname}${url.search}`, headers, body, timeoutMs: deps.timeoutMs },
      guardedLookup(deps.allow),
    );
    if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status, counted: true };
    return {
      ok: false,
      error: short(`HTTP ${res.status}${res.body ? `: ${res.body}` : ''}`),
      status: res.status,
      retry: true,
      counted: true,
    };
  } catch (err) {
    return { ok: false, error: short((err as Error).message || String(err)), status: null, retry: true, counted: true };
  }
}

/** The BullMQ processor's verdict: resolve on success, throw to retry, UnrecoverableError to stop. */
export function throwUnlessDelivered(a: Attempt): void {
  if (a === 'skipped' || a.ok) return;
  if (!a.retry) throw new UnrecoverableError(a.error);
  throw new Error(a.error);
}
