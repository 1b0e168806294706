// Starts the execution workers (BullMQ consumers over the shared Postgres ledger).
// Execution of operations arrives with the canary-wave issue; until then there is nothing to run.
import type { FastifyBaseLogger } from 'fastify';

export interface WorkerOptions {
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  concurrency: number;
  signingSecret: string | undefined;
  logger: FastifyBaseLogger;
}

export interface RunningWorkers {
  close(): Promise<void>;
}

export async function startWorkers(_opts: WorkerOptions): Promise<RunningWorkers> {
  return { close: async () => undefined };
}
