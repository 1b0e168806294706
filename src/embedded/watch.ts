// The local servers of embedded mode, watched while the API runs. When one of them stopped (killed,
// out of memory), the API answered 503 to every request needing it and logged a warning per request,
// but never said that its own PostgreSQL or Redis was gone, nor what to do (a new-user trial killed
// PostgreSQL under `npm start`). A server that is gone is now said once, with the way back.
import { isRunning } from './procs.ts';

const NAMES = { postgres: ['PostgreSQL', 'postgres'], redis: ['Redis', 'redis-server'] } as const;
// What an operator sees meanwhile. Without Redis, reads and commands still answer (a trial's pause
// did): only queued work waits, and "requests fail (503)" sent them looking for errors.
const EFFECT = {
  postgres: 'requests that need it fail (503)',
  redis:
    'queued work (waves, rollbacks, intake jobs) waits and views say `waiting: redis`; reads and commands still answer',
} as const;

/** Checks every `everyMs`; returns a function that stops watching. */
export function watchLocalServers(
  pids: { postgres?: number; redis?: number },
  dataDir: string,
  say: (message: string) => void,
  everyMs = 5_000,
): () => void {
  const told = new Set<string>();
  const timer = setInterval(() => {
    for (const kind of ['postgres', 'redis'] as const) {
      const pid = pids[kind];
      if (pid === undefined || told.has(kind) || isRunning(pid, NAMES[kind][1])) continue;
      told.add(kind);
      say(
        `the local ${NAMES[kind][0]} (pid ${pid}) has stopped: ${EFFECT[kind]} until it runs again. ` +
          `Stop this start (Ctrl-C) and run npm start again: it starts ${NAMES[kind][0]} on the data kept in ${dataDir}/ ` +
          `(one started again on that data by other means is used as it is: running operations go on by themselves)`,
      );
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
