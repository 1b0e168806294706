#!/usr/bin/env node
// Submits an operation through the Blastgate CI intake queue and waits for its plan: what a
// pipeline runs when it reaches Redis but not the API (README, "CI intake queue"). Needs only the
// bullmq package (which brings ioredis). Tested by test/intake/intake-queue.test.ts.
//
//   node scripts/ci-intake-example.mjs <operation.json> <idempotency-key>
//
// Environment: REDIS_URL and BLASTGATE_TOKEN (a requester token) are required;
// BLASTGATE_QUEUE_PREFIX (default blastgate); BLASTGATE_INTAKE_TIMEOUT_MS (default 120000).
// Prints the job's return value (planned) or its failedReason (refused) as JSON on stdout.
// Exit codes: 0 planned · 10 plan rejected · 2 usage error · 1 any other refusal or error.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';

const [file, key] = process.argv.slice(2);
const { REDIS_URL, BLASTGATE_TOKEN } = process.env;
const prefix = process.env.BLASTGATE_QUEUE_PREFIX || 'blastgate';
const timeoutMs = Number(process.env.BLASTGATE_INTAKE_TIMEOUT_MS || 120_000);

if (!file || !key || !REDIS_URL || !BLASTGATE_TOKEN || !/^[A-Za-z0-9._-]{1,200}$/.test(key) || /^\d+$/.test(key)) {
  console.error(
    'usage: REDIS_URL=… BLASTGATE_TOKEN=… node scripts/ci-intake-example.mjs <operation.json> <idempotency-key>\n' +
      '  the key (the job ID) is 1-200 characters of A-Z a-z 0-9 . _ - and not only digits',
  );
  process.exit(2);
}

const operation = JSON.parse(await readFile(file, 'utf8'));
/** The value with its object keys in order, for comparing two bodies. */
const sorted = (v) =>
  Array.isArray(v)
    ? v.map(sorted)
    : v && typeof v === 'object'
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, sorted(v[k])]),
        )
      : v;
/**
 * Whose token added a job, without the token: the worker replaces data.token with this when it
 * picks the job up (README, "CI intake queue"; src/cli/token-fingerprint.ts computes the same).
 */
const fingerprint = (jobId, token) =>
  createHash('sha256').update(`blastgate intake token v1\n${jobId}\n${token}`).digest('hex');
/** The fingerprint of the token a job was added with: its token while it waits, then the worker's fingerprint. */
const ownerOf = (job) =>
  typeof job.data?.token === 'string'
    ? fingerprint(job.id, job.data.token)
    : typeof job.data?.tokenFingerprint === 'string'
      ? job.data.tokenFingerprint
      : null;
// BullMQ needs maxRetriesPerRequest: null on the connection QueueEvents blocks on.
const connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });
// Without a listener ioredis prints a stack per reconnect attempt while Redis is down.
connection.on('error', () => undefined);
const queue = new Queue('intake', { connection, prefix });
const eventsConnection = connection.duplicate();
eventsConnection.on('error', () => undefined);
const events = new QueueEvents('intake', { connection: eventsConnection, prefix });
let code = 1;
try {
  await events.waitUntilReady();
  // A job of this key that failed (a bad token, a refusal) is kept for a week, and add() answers
  // with it: a re-run after the cause was fixed got the old failure back, or IDEMPOTENCY_KEY_REUSED
  // once the token was corrected (a trial). A failure planned nothing, so it goes (same body only:
  // another body under the key is refused below) and this run's job is added, as the CLI does.
  const before = await Job.fromId(queue, key);
  if (
    before &&
    JSON.stringify(sorted(before.data?.operation)) === JSON.stringify(sorted(operation)) &&
    (await before.getState()) === 'failed'
  )
    await before.remove();
  // The job ID is the Idempotency-Key: a rerun of the pipeline gets the same operation back.
  const job = await queue.add('submit', { token: BLASTGATE_TOKEN, operation }, { jobId: key });
  // A key BullMQ still keeps returns the kept job: if it carries another body, its outcome is not
  // this request's (REST answers 409 there). Key order aside, JSON.stringify compares the bodies.
  const kept = await Job.fromId(queue, key);
  // Nor is another token's (REST's rule: a key replays only for the token that used it); this is
  // checked first, as REST checks the token before the body.
  if (kept && ownerOf(kept) !== fingerprint(key, BLASTGATE_TOKEN)) {
    const message =
      'This Idempotency-Key was used by another token for an operation of its own; a key replays only for ' +
      `the token that made it. Use a new key (the intake queue keeps job ${key}, added with another token)`;
    console.log(JSON.stringify({ code: 'IDEMPOTENCY_KEY_REUSED', message, details: { idempotencyKey: key } }, null, 2));
    throw Object.assign(new Error(message), { reported: true });
  }
  if (kept && JSON.stringify(sorted(kept.data.operation)) !== JSON.stringify(sorted(operation))) {
    const message = `job ${key} (${await kept.getState()}) was submitted with another body; use a new key for a different request`;
    console.log(JSON.stringify({ code: 'IDEMPOTENCY_KEY_REUSED', message }, null, 2));
    throw Object.assign(new Error(message), { reported: true });
  }
  try {
    const result = await job.waitUntilFinished(events, timeoutMs);
    console.log(JSON.stringify(result, null, 2));
    code = 0;
  } catch (err) {
    // A refusal's failedReason is JSON: { code, message, status, details? } (PLAN_REJECTED: operationId, report).
    let reason;
    try {
      reason = JSON.parse(err.message);
    } catch {
      reason = { code: 'ERROR', message: err.message };
    }
    console.log(JSON.stringify(reason, null, 2));
    // status 400: the job's input was refused (a flag or an ID to fix), as a usage error; running
    // the same job again cannot help.
    code = reason.code === 'PLAN_REJECTED' ? 10 : reason.status === 400 ? 2 : 1;
  }
} catch (err) {
  if (!err.reported) throw err;
} finally {
  await events.close();
  await queue.close();
  connection.disconnect();
  eventsConnection.disconnect();
}
process.exit(code);
