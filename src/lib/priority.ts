// Lowering a process's own CPU priority (raising its nice value), never raising it: a process
// started at a lower priority than asked for (`nice -n 15 npm run worker`) keeps it.
//
// On Linux a nice value belongs to a thread, and setpriority() on the process ID changes the main
// thread only: V8's garbage-collection helpers and libuv's pool, started before, would keep
// competing at the old priority. So every thread of the process is lowered (/proc/self/task);
// threads started afterwards inherit the value from the thread that starts them.
import { readdirSync, readFileSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';
import type { FastifyBaseLogger } from 'fastify';
import type pg from 'pg';

export interface Lowered {
  /** The main thread's nice value afterwards. */
  now: number;
  /** Why a thread could not be lowered (the first such error), if any. */
  problem?: Error;
}

export function lowerPriority(nice: number, threads: () => number[] = ownThreads): Lowered {
  let problem: Error | undefined;
  for (const tid of threads()) {
    try {
      // A thread that ended meanwhile, or one already lower, is left as it is.
      if (getPriority(tid) < nice) setPriority(tid, nice);
    } catch (err) {
      // Node's SystemError carries the errno name in `info.code`.
      const e = err as { code?: string; info?: { code?: string } };
      if ((e.info?.code ?? e.code) !== 'ESRCH') problem ??= err as Error;
    }
  }
  return { now: getPriority(), ...(problem ? { problem } : {}) };
}

/** This process's thread IDs on Linux; elsewhere the process itself (0: the calling process). */
function ownThreads(): number[] {
  try {
    return readdirSync('/proc/self/task').map(Number);
  } catch {
    return [0];
  }
}

/**
 * Lowers the PostgreSQL backend serving one of this process's connections, when that backend runs
 * on this machine. Where workers share a host with the API and PostgreSQL (`npm start`, a single
 * box), most of a chunk's CPU is spent in its backend, not in the worker (`npm run bench -- waves`:
 * PostgreSQL 86–93 µs per item, Blastgate 51–55), so a lowered worker alone still starved the
 * API's reads. The backend is recognised by its process title, "postgres: user db 127.0.0.1(port)
 * …", which must name this connection's own local port on a loopback address: a pid reported by a
 * server elsewhere that happens to exist here is never touched.
 */
export function lowerLocalBackend(
  pid: number,
  clientPort: number | undefined,
  nice: number,
  title: (pid: number) => string = processTitle,
): 'lowered' | 'not-local' | Error {
  if (!clientPort || !Number.isInteger(pid) || pid <= 0) return 'not-local';
  let t: string;
  try {
    t = title(pid);
  } catch {
    return 'not-local'; // no such process here (a remote server), or not ours to read
  }
  const ours = t.startsWith('postgres: ') && /(?:127\.\d+\.\d+\.\d+|::1|localhost)\((\d+)\)/.exec(t)?.[1];
  if (ours !== String(clientPort)) return 'not-local';
  try {
    if (getPriority(pid) < nice) setPriority(pid, nice);
    return 'lowered';
  } catch (err) {
    return err as Error;
  }
}

/** A process's title as ps shows it (PostgreSQL rewrites its argv area with it). */
function processTitle(pid: number): string {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replaceAll('\0', ' ');
}

/**
 * Lowers each new connection's backend when PostgreSQL is on this machine. Said once in the log:
 * that it is done (with the value), or why it could not be (a server elsewhere: nothing to do).
 */
export function backendLowering(nice: number, logger: Pick<FastifyBaseLogger, 'info' | 'warn'>) {
  let said = false;
  return async (client: pg.ClientBase) => {
    const r = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').catch(() => undefined);
    const pid = r?.rows[0]?.pid;
    // pg keeps the socket on its connection; its local port is what the backend's title names.
    const port = (client as unknown as { connection?: { stream?: { localPort?: number } } }).connection?.stream
      ?.localPort;
    const outcome = pid === undefined ? 'not-local' : lowerLocalBackend(pid, port, nice);
    if (said) return;
    said = true;
    if (outcome instanceof Error)
      logger.warn({ err: outcome, nice }, "could not lower the priority of the workers' PostgreSQL backends");
    else if (outcome === 'lowered')
      logger.info({ nice }, "PostgreSQL runs here: the workers' backends run at this nice value");
  };
}
