// The typed job registry: every queue's name and payload. Redis moves work; the Postgres ledger
// decides what is done, so a lost or repeated job is harmless.
import { Queue, type ConnectionOptions, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * Items per chunk job: large enough for set-based ledger writes, small enough to bound a retry.
 * 1,000 (500 before): a registry chunk is one transaction of ~12 statements whatever its size, and
 * its commit queues on the wave's row; `npm run bench -- waves` went from 15.8k–17.6k to
 * 17.0k–20.0k items/s (PostgreSQL 55–59 → 50–51 µs per item, interleaved), and 2,000 fell to
 * 13.5k (PostgreSQL 89–92 µs). The HTTP path's rate is set by its call slots, not by the chunk
 * (`npm run bench -- efficiency`: 0.70/0.83 against 0.73/0.82, within the spread).
 * Processes with another size meanwhile (a rolling upgrade) are safe: chunks of other bounds
 * overlap, and the ledger's claim (or the registry chunk's row locks) lets each item run once.
 */
export const CHUNK_SIZE = 1000;

export interface ChunkJob {
  opId: string;
  epoch: number;
  wave: number;
  from: number;
  to: number;
  /** How many times in a row this chunk handed parents back to wait for their children (purge-children.ts). */
  waits?: number;
}
export type ControlJob =
  | { kind: 'bake'; opId: string; epoch: number; wave: number; round: number }
  | { kind: 'settle'; opId: string; epoch: number; wave: number }
  | { kind: 'rollback'; opId: string; epoch: number }
  | { kind: 'drill'; opId: string; epoch: number; wave: number };

export const QUEUE_NAMES = { items: 'items', control: 'control' } as const;

// Completed and failed jobs are removed: the ledger is the record, and a deterministic job ID
// that lingered would stop the reconciler from re-adding work that Redis lost track of.
// Attempts and backoff ride out a dependency that restarts (about a minute in all); a job that
// still fails after that is quarantined by the worker (see worker-runtime.ts), never retried
// forever in silence.
export const JOB_ATTEMPTS = 8;
const JOB_DEFAULTS: JobsOptions = {
  removeOnComplete: true,
  removeOnFail: true,
  attempts: JOB_ATTEMPTS,
  backoff: { type: 'exponential', delay: 500 },
};

export interface Queues {
  items: Queue<ChunkJob>;
  control: Queue<ControlJob>;
  enqueueWave(job: Omit<ChunkJob, 'from' | 'to'>, range: { from: number; to: number }): Promise<number>;
  enqueueChunks(chunks: ChunkJob[]): Promise<void>;
  enqueueControl(job: ControlJob, delayMs?: number): Promise<void>;
  /**
   * Moves the jobs that failed and wait for their retry (backoff) to the front: after an outage,
   * when what failed them is back. Jobs put off on purpose (a velocity cap, a rollback's sleep, a
   * run that found another at work) failed nothing and keep their time. Returns how many moved.
   */
  retryFailedNow(): Promise<number>;
  close(): Promise<void>;
}

/** Delayed jobs looked at per queue by retryFailedNow: every job of a large wave fits. */
const RETRY_SCAN = 5_000;

// BullMQ forbids ':' in custom IDs (it is Redis's key separator), hence the dots.
export const chunkJobId = (j: ChunkJob) =>
  `${j.opId}.e${j.epoch}.wave.${j.wave}.chunk.${Math.floor(j.from / CHUNK_SIZE)}`;
export const controlJobId = (j: ControlJob) =>
  j.kind === 'bake'
    ? `${j.opId}.e${j.epoch}.bake.${j.wave}.${j.round}`
    : j.kind === 'rollback' || j.kind === 'drill'
      ? `${j.opId}.e${j.epoch}.${j.kind}`
      : `${j.opId}.e${j.epoch}.${j.kind}.${j.wave}`;

export function createQueues(connection: Redis, prefix: string): Queues {
  const opts = { connection: connection as ConnectionOptions, prefix, defaultJobOptions: JOB_DEFAULTS };
  const items = new Queue<ChunkJob>(QUEUE_NAMES.items, opts);
  const control = new Queue<ControlJob>(QUEUE_NAMES.control, opts);
  // Without a listener BullMQ prints every reconnect attempt to stderr; the connection's owner
  // (the API's Redis plugin, the worker runtime) already logs its errors.
  for (const q of [items, control]) q.on('error', () => undefined);
  const enqueueChunks = async (chunks: ChunkJob[]) => {
    for (let i = 0; i < chunks.length; i += 1000) {
      await items.addBulk(
        chunks.slice(i, i + 1000).map((data) => ({ name: 'chunk', data, opts: { jobId: chunkJobId(data) } })),
      );
    }
  };
  return {
    items,
    control,
    enqueueChunks,
    async enqueueWave(job, range) {
      const chunks: ChunkJob[] = [];
      for (let from = range.from; from < range.to; from += CHUNK_SIZE)
        chunks.push({ ...job, from, to: Math.min(range.to, from + CHUNK_SIZE) });
      await enqueueChunks(chunks);
      return chunks.length;
    },
    async enqueueControl(job, delayMs = 0) {
      await control.add(job.kind, job, { jobId: controlJobId(job), delay: delayMs });
    },
    async retryFailedNow() {
      let moved = 0;
      for (const q of [items, control] as Queue[]) {
        for (const job of await q.getDelayed(0, RETRY_SCAN - 1)) {
          if (job.attemptsMade === 0) continue;
          // Gone or moved since it was listed (run, removed): nothing to do.
          moved += await job.promote().then(
            () => 1,
            () => 0,
          );
        }
      }
      return moved;
    },
    async close() {
      await Promise.all([items.close(), control.close()]);
    },
  };
}
