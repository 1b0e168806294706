// `submit --via-queue`: the CI intake queue (contract: BullMQ queue `intake` under the prefix,
// job data { token, operation }, job ID = idempotency key). Waits for the job and maps its
// outcome as the REST path does: a plan → 0, PLAN_REJECTED → 10, any other refusal → 1.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { byFlag, CliError, EXIT, usageError } from './exit-codes.ts';
import { intakeTokenFingerprint } from './token-fingerprint.ts';
import { timedOut, waitingFor, waitingNotes, WAITING_NOTE_MS } from './queue-wait.ts';

export interface QueueSubmitOptions {
  redisUrl: string;
  prefix: string;
  token: string;
  operation: Record<string, unknown>;
  jobId?: string;
  timeoutMs: number;
  /** Progress notes while the job waits (stderr; the caller drops them under --json). */
  note?: (text: string) => void;
  /** When the first "still waiting" note comes (then every 30 s while the job is not picked up). */
  waitingNoteMs?: number;
}

export interface QueueResult {
  operationId: string;
  state: string;
  planHash: string | null;
  plan: unknown;
  links?: { self?: string; events?: string };
  jobId: string;
  /** The job was added by an earlier run: its result is from then (the state at plan time). */
  replayed?: boolean;
}

const JOB_ID = /^[A-Za-z0-9._-]{1,200}$/;

export async function submitViaQueue(o: QueueSubmitOptions): Promise<QueueResult> {
  const jobId = o.jobId ?? `cli-${randomUUID()}`;
  if (!JOB_ID.test(jobId))
    throw usageError(`--idempotency-key must be 1–200 characters of A-Z a-z 0-9 . _ - to be a job ID (got "${jobId}")`);
  // BullMQ refuses an integer job ID only once the job is added (QUEUE_FAILED, exit 1).
  if (/^\d+$/.test(jobId))
    throw usageError(
      `--idempotency-key must not be a whole number to be a job ID (got "${jobId}"): BullMQ refuses those`,
    );
  // Loaded only here: the other commands never need a Redis client.
  const { Job, Queue, QueueEvents } = await import('bullmq');
  const connection = { url: o.redisUrl, maxRetriesPerRequest: null, lazyConnect: false };
  const queue = new Queue('intake', { connection, prefix: o.prefix });
  // Connection errors are kept for the message below: without a listener BullMQ prints each one
  // (ioredis reconnects for ever) as a stack trace on stderr, also under --json.
  let lastError: Error | undefined;
  const noteError = (err: Error) => (lastError = err);
  queue.on('error', noteError);
  let events: { close(): Promise<unknown>; disconnect(): Promise<unknown> } | undefined;
  /** The key's job was there before this run (it made its operation then): the answer is a replay. */
  let keptBefore = false;
  try {
    // Reaching Redis and adding the job is bounded: an unreachable Redis (a wrong URL, a firewall)
    // used to hold a pipeline step for ever, since ioredis retries the commands without end.
    const connectMs = Math.min(o.timeoutMs, CONNECT_TIMEOUT_MS);
    const [job, ready] = await withDeadline(
      (async () => {
        // The job's outcome is read from the events stream. A QueueEvents left to start at '$' misses an
        // outcome written after its ready check but before its first blocking read (a fast worker, a
        // slow CLI: the wait then lasts until the timeout; seen once in CI). Reading from the stream's
        // last entry before the job exists sees every event after it.
        // BullMQ types its client by what BullMQ itself calls; it is an ioredis client.
        const client = (await queue.getBackend().client) as unknown as Redis;
        const last = await client.xrevrange(queue.keys.events!, '+', '-', 'COUNT', 1);
        const ev = new QueueEvents('intake', { connection, prefix: o.prefix, lastEventId: last[0]?.[0] ?? '0-0' });
        events = ev;
        ev.on('error', noteError);
        await ev.waitUntilReady();
        // A job of this key that failed (a bad token, a refusal) is kept for a week, and add()
        // answers with it: every re-run after the cause was fixed got the old failure back (a
        // trial). A failure planned nothing, so the kept job goes and this run's job is added.
        // (Another body under the key stays: it is refused below, as REST refuses it.)
        // A completed job that does not say whose token added it (one finished by a worker older than
        // the fingerprint) goes too: the job added again is planned by the worker, which applies
        // REST's rule (a replay for the same token, IDEMPOTENCY_KEY_REUSED for another).
        const before = await Job.fromId(queue, jobId);
        const sameBody = (j: typeof before) =>
          sortedJson((j?.data as { operation?: unknown } | undefined)?.operation) === sortedJson(o.operation);
        const beforeState = before ? await before.getState() : undefined;
        if (
          before &&
          sameBody(before) &&
          (beforeState === 'failed' || (beforeState === 'completed' && ownerOf(before, jobId) === null))
        )
          await before.remove();
        // A replay only when the kept job had already planned: one still waiting (a re-run after a
        // --timeout with no worker up, as the timeout says to) is planned for the first time now,
        // and read "A replay: … nothing new was planned" (a probe).
        else if (before && beforeState === 'completed') keptBefore = true;
        const added = await queue.add(
          'submit',
          { token: o.token, operation: o.operation },
          // As the worker keeps them (README): completed for a day, failed for a week.
          { jobId, removeOnComplete: { age: 86_400 }, removeOnFail: { age: 7 * 86_400 } },
        );
        return [added, ev] as const;
      })(),
      connectMs,
      () =>
        new CliError(
          EXIT.error,
          'QUEUE_UNREACHABLE',
          `the intake queue at ${redact(o.redisUrl)} could not be reached within ${connectMs} ms` +
            (lastError ? ` (${lastError.message})` : '') +
            // The key by name: without --idempotency-key it was made up for this run (cli-<uuid>),
            // and "the same key" sent a re-run off with a new one, adding a second job.
            `; run it again with --idempotency-key ${jobId} (one key never adds two jobs)`,
          { redisUrl: redact(o.redisUrl), ...(lastError ? { lastError: lastError.message } : {}) },
        ),
    );
    // A job ID BullMQ still keeps adds nothing: add() answers with the kept job, whose outcome is
    // another body's if this key was used for one. REST answers that with 409; so does this.
    const kept = await Job.fromId(queue, jobId);
    // Whose job it is comes first, as REST checks the token before the body: another token's job
    // (or one that does not say whose it is) is never this run's answer, whatever its body.
    if (kept && ownerOf(kept, jobId) !== intakeTokenFingerprint(jobId, o.token))
      throw new CliError(
        EXIT.error,
        'IDEMPOTENCY_KEY_REUSED',
        `This Idempotency-Key was used by another token for an operation of its own; a key replays only for the token that made it. Use a new key (the intake queue keeps job ${jobId}, added with another token)`,
        { idempotencyKey: jobId },
      );
    const keptOperation = (kept?.data as { operation?: unknown } | undefined)?.operation;
    if (kept && sortedJson(keptOperation) !== sortedJson(o.operation)) {
      const jobState = await kept.getState();
      throw new CliError(
        EXIT.error,
        'IDEMPOTENCY_KEY_REUSED',
        `the intake queue already has a job under idempotency key ${jobId} (${jobState}) for another request body; use a new key for a different request`,
        { idempotencyKey: jobId, jobState },
      );
    }
    // A job no worker picks up (none connected, all busy) used to be waited on in silence until
    // --timeout. Say what it waits for, while it does.
    const client = (await queue.getBackend().client) as unknown as Redis;
    const why = (state: string) => waitingFor(state, client, o.prefix);
    const notes = o.note ? waitingNotes(job, why, o.note, o.waitingNoteMs ?? WAITING_NOTE_MS) : undefined;
    try {
      const value = (await job.waitUntilFinished(ready, o.timeoutMs)) as Omit<QueueResult, 'jobId'>;
      // A replay: the job was kept from an earlier run, or the key made the operation before it
      // (over REST, or by a job BullMQ no longer keeps), which the worker says.
      return { ...value, jobId, ...(keptBefore || value.replayed ? { replayed: true } : {}) };
    } catch (err) {
      const e = err as Error;
      // BullMQ's own timeout, not a failedReason that happens to say "timed out".
      if (!/^Job wait .* timed out before finishing/.test(e.message)) throw refusal(e);
      throw await timedOut(job, why, jobId, o.prefix, o.timeoutMs);
    } finally {
      notes?.stop();
    }
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(
      EXIT.error,
      'QUEUE_FAILED',
      `the intake queue at ${redact(o.redisUrl)}: ${(err as Error).message}`,
    );
  } finally {
    // Closing waits for Redis too: bounded, then the connections are dropped.
    const closing = Promise.all([events?.close(), queue.close()]).catch(() => undefined);
    await withDeadline(closing, CLOSE_TIMEOUT_MS, () => new Error('close timed out')).catch(async () => {
      await events?.disconnect().catch(() => undefined);
      await queue.disconnect().catch(() => undefined);
    });
  }
}

/**
 * The fingerprint of the token that added a job (token-fingerprint.ts): computed from the token a
 * job not yet picked up still holds, else the one the worker left in its place; null for a job
 * that has neither (added without a token, or finished by a worker older than the fingerprint).
 */
function ownerOf(job: { data: unknown }, jobId: string): string | null {
  const data = (job.data ?? {}) as { token?: unknown; tokenFingerprint?: unknown };
  if (typeof data.token === 'string') return intakeTokenFingerprint(jobId, data.token);
  return typeof data.tokenFingerprint === 'string' ? data.tokenFingerprint : null;
}

/** How long reaching Redis and adding the job may take (or --timeout, if shorter). */
const CONNECT_TIMEOUT_MS = 15_000;
const CLOSE_TIMEOUT_MS = 2_000;

/** `p`, or the error `onTimeout` makes once `ms` passed (the timer never keeps the process alive). */
async function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
    timer.unref();
  });
  try {
    return await Promise.race([p, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * JSON with object keys in order, to compare two request bodies. Local: the packed CLI carries
 * src/cli and little else of src (package.json "files").
 */
function sortedJson(v: unknown): string {
  const sorted = (x: unknown): unknown =>
    Array.isArray(x)
      ? x.map(sorted)
      : x && typeof x === 'object'
        ? Object.fromEntries(
            Object.keys(x)
              .sort()
              .map((k) => [k, sorted((x as Record<string, unknown>)[k])]),
          )
        : x;
  return JSON.stringify(sorted(v));
}

/** A failed job's reason is the refusal as JSON ({ code, message, details?, report? }). */
function refusal(err: Error): CliError {
  let r: {
    code?: string;
    message?: string;
    details?: unknown;
    report?: unknown;
    operationId?: string;
    status?: number;
  };
  try {
    r = JSON.parse(err.message) as typeof r;
  } catch {
    return new CliError(EXIT.error, 'JOB_FAILED', err.message);
  }
  if (r.code === 'PLAN_REJECTED') {
    const report = (r.report ?? r.details ?? {}) as Record<string, unknown>;
    const details = { operationId: r.operationId ?? null, ...report };
    if (r.operationId && !('reportUrl' in details))
      Object.assign(details, { reportUrl: `/v1/operations/${r.operationId}/report` });
    return new CliError(EXIT.rejected, 'PLAN_REJECTED', r.message ?? 'the plan was rejected', details);
  }
  // A 400 is the job's input, built from this invocation's flags and ID list: a usage error (exit 2),
  // as the same refusal over REST is (http.ts apiError); the caller names the flags in it (inFlags).
  const status = typeof r.status === 'number' ? r.status : undefined;
  const exit = status === 400 || byFlag(r.code) ? EXIT.usage : EXIT.error;
  return new CliError(exit, r.code ?? 'JOB_FAILED', r.message ?? err.message, r.details, status);
}

/**
 * A usage error (exit 2) for a Redis URL the queue cannot use, naming where it came from (`source`:
 * the flag or the environment variable), as the server checks REDIS_URL; null for a usable one.
 * Such a URL used to be tried for 15 s and end as QUEUE_UNREACHABLE "at (invalid URL)". The value is
 * not repeated: it may hold a password.
 */
export function redisUrlProblem(url: string, source: string): CliError | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return usageError(`${source} is not a URL: give redis://host:port or rediss://host:port (TLS)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    return usageError(`${source} must use redis: or rediss: (got ${u.protocol}): redis://host:port`);
  if (u.pathname !== '' && u.pathname !== '/' && !/^\/\d{1,5}$/.test(u.pathname))
    return usageError(`${source} must name a Redis database by number (redis://host:port/0), not "${u.pathname}"`);
  return null;
}

/** A Redis URL as shown: without its password. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(invalid URL)';
  }
}
