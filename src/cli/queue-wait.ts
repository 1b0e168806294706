// The wait of an intake job `submit --via-queue` added: what it waits for while no worker takes it
// (notes on stderr), and what the timeout says. Apart from queue.ts, which adds the job.
import type { Redis } from 'ioredis';
import { CliError, EXIT } from './exit-codes.ts';

/** When the first "still waiting" note comes; then every WAITING_NOTE_EVERY_MS. */
export const WAITING_NOTE_MS = 5_000;
const WAITING_NOTE_EVERY_MS = 30_000;

interface JobLike {
  getState(): Promise<string>;
}

/** BullMQ names a worker's connection `<prefix>:<base64 of the queue's name>`, `:w:<name>` after it. */
const INTAKE_WORKER = new RegExp(`^(.+):${Buffer.from('intake').toString('base64')}(?::w:.*)?$`);
/** How many other prefixes a note names. */
const PREFIXES_NAMED = 10;

/**
 * The prefixes under which intake workers are connected to this Redis (from CLIENT LIST, as BullMQ's
 * getWorkers reads it), or null where the server does not answer it (some managed Redis refuse it).
 */
export async function intakeWorkerPrefixes(client: Pick<Redis, 'client'>): Promise<string[] | null> {
  try {
    const list = String(await client.client('LIST'));
    const found = new Set<string>();
    for (const line of list.split(/\r?\n/)) {
      const name = /(?:^| )name=(\S+)/.exec(line)?.[1];
      const prefix = name && INTAKE_WORKER.exec(name)?.[1];
      if (prefix) found.add(prefix);
    }
    return [...found].sort();
  } catch {
    return null;
  }
}

/**
 * What the job's state says it waits for, or null when it is being planned (or done). A job under a
 * mistyped prefix waited to its timeout with "is one running on this Redis and prefix?" while the
 * workers ran under the right one (a trial): the connected workers' prefixes say which it is. It is
 * not refused: one Redis may serve several deployments by prefix, and this one's workers may be
 * restarting while another's run.
 */
export async function waitingFor(state: string, client: Pick<Redis, 'client'>, prefix: string): Promise<string | null> {
  if (state === 'delayed') return 'it waits for a retry (the worker found PostgreSQL or Redis down)';
  if (state !== 'waiting' && state !== 'prioritized' && state !== 'waiting-children') return null;
  const served = await intakeWorkerPrefixes(client);
  if (served?.includes(prefix))
    return `the intake workers under prefix ${prefix} are busy with other jobs; it stays queued`;
  const others = (served ?? []).filter((p) => p !== prefix);
  if (others.length)
    return (
      `no intake worker is connected under prefix ${prefix}, while intake workers are under ` +
      `${others.slice(0, PREFIXES_NAMED).join(', ')}${others.length > PREFIXES_NAMED ? ` and ${others.length - PREFIXES_NAMED} more` : ''}` +
      ` (is --queue-prefix or BLASTGATE_QUEUE_PREFIX right?); it stays queued`
    );
  if (served)
    return 'no intake worker is connected to this Redis (none is running, or it is restarting); it stays queued';
  return 'no intake worker has picked it up (is one running on this Redis and prefix?); it stays queued';
}

/** Notes on the job's wait while it is not picked up: first after `firstMs`, then every 30 s. */
export function waitingNotes(
  job: JobLike & { id?: string | undefined },
  waitsFor: (state: string) => Promise<string | null>,
  note: (text: string) => void,
  firstMs: number,
) {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const started = Date.now();
  const tick = async () => {
    const state = await job.getState().catch(() => undefined);
    const why = state && (await waitsFor(state));
    if (stopped) return;
    if (why)
      note(`The intake job ${job.id} is still ${state} after ${Math.round((Date.now() - started) / 1000)} s: ${why}.`);
    timer = setTimeout(() => void tick(), WAITING_NOTE_EVERY_MS);
    timer.unref();
  };
  timer = setTimeout(() => void tick(), firstMs);
  timer.unref();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}

/**
 * --timeout ran out: the job is not withdrawn by that. Says where it is and what the operator can
 * do, since a worker that comes later still plans it.
 */
export async function timedOut(
  job: JobLike,
  waitsFor: (state: string) => Promise<string | null>,
  jobId: string,
  prefix: string,
  timeoutMs: number,
): Promise<CliError> {
  const state = await job.getState().catch(() => 'unknown');
  const pending = state === 'waiting' || state === 'prioritized' || state === 'delayed' || state === 'active';
  const why = await waitsFor(state);
  return new CliError(
    EXIT.timedOut,
    'TIMED_OUT',
    `the intake job ${jobId} did not finish within ${timeoutMs} ms (it is ${state}` +
      (pending
        ? `${why ? `: ${why.replace(/; it stays queued$/, '')}` : ''}). It stays in the queue: a worker that takes it later still plans it. ` +
          `To wait for it again, run the same command with --idempotency-key ${jobId} (no second job is added). ` +
          `To withdraw it while it waits, remove job ${jobId} from the intake queue (BullMQ: Queue.remove('${jobId}') on queue intake, prefix ${prefix}); ` +
          `once planned, the operation still needs its approvals, and blastgate abort <operation> cancels it`
        : ')'),
    { jobId, jobState: state },
  );
}
