// The local servers of embedded mode, watched while the API runs. When one of them stopped (killed,
// out of memory), the API answered 503 to every request needing it and logged a warning per request,
// but never said that its own PostgreSQL or Redis was gone, nor what to do (a new-user trial killed
// PostgreSQL under `npm start`). A server that is gone is now said once, with the ways back, and
// so is its return: a trial started Redis again by hand (rebuilding its command line from CONFIG
// GET, since redis-server rewrites its process title) and heard nothing more from this start.
import { isRunning } from './procs.ts';
import type { WatchedServer } from './local-services.ts';

const NAMES = { postgres: ['PostgreSQL', 'postgres'], redis: ['Redis', 'redis-server'] } as const;
// What an operator sees meanwhile. Without Redis, reads and commands still answer (a trial's pause
// did): only queued work waits, and "requests fail (503)" sent them looking for errors.
const EFFECT = {
  postgres: 'requests that need it fail (503)',
  redis:
    'queued work (waves, rollbacks, intake jobs) waits and views say `waiting: redis`; reads and commands still answer',
} as const;

type Kind = keyof typeof NAMES;

/** Checks every `everyMs`; returns a function that stops watching. */
export function watchLocalServers(
  /** The servers this start owns: their pids, how to find them again and start them by hand. */
  servers: { postgres?: WatchedServer; redis?: WatchedServer },
  dataDir: string,
  say: (message: string) => void,
  everyMs = 5_000,
): () => void {
  const now = { postgres: servers.postgres?.pid, redis: servers.redis?.pid };
  const gone = new Set<Kind>();
  const timer = setInterval(() => {
    for (const kind of ['postgres', 'redis'] as const) {
      const pid = now[kind];
      const server = servers[kind];
      if (pid === undefined || !server) continue;
      const [name, comm] = NAMES[kind];
      if (gone.has(kind)) {
        // Started again on the same data (by hand, a supervisor, `pg_ctl start`): say so, and watch it.
        const again = server.locate();
        if (again === undefined || !isRunning(again, comm)) continue;
        gone.delete(kind);
        now[kind] = again;
        say(`the local ${name} runs again (pid ${again}) on the data in ${dataDir}/: this start uses it as it is`);
        continue;
      }
      if (isRunning(pid, comm)) continue;
      gone.add(kind);
      say(
        `the local ${name} (pid ${pid}) has stopped: ${EFFECT[kind]} until it runs again. ` +
          `Start it again while this start runs, on the same data and port: ${server.startAgain} ` +
          `(running operations go on by themselves); or stop this start (Ctrl-C) and run npm start again: it starts ${name} on the data kept in ${dataDir}/`,
      );
    }
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
