// The fault injectors. Each injects one fault and then heals it (restarts what it killed, resumes
// what it froze); inject() resolves once the system is whole again, and the trial keeps waiting for
// a terminal state meanwhile.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { Cluster } from './cluster.ts';
import type { Managed } from './procs.ts';
import { sleep } from './procs.ts';
import type { Rng } from './rng.ts';

export const FAULTS = [
  'kill-worker',
  'kill-all-workers',
  'kill-api',
  'stop-worker',
  'kill-redis',
  'restart-postgres',
] as const;
export type FaultKind = (typeof FAULTS)[number] | 'none';

export interface Injected {
  /** What exactly was done (victim, durations). */
  note: string;
}

/** The inode of the client socket whose local port is `port` and remote port `remotePort`. */
function clientSocketInode(port: number, remotePort: number): string | undefined {
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const local = parseInt(cols[1]!.split(':').pop()!, 16);
      const remote = parseInt(cols[2]!.split(':').pop()!, 16);
      if (local === port && remote === remotePort) return cols[9];
    }
  }
  return undefined;
}

function ownsInode(pid: number, inode: string): boolean {
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return true;
      } catch {
        /* fd closed meanwhile */
      }
    }
  } catch {
    /* process gone */
  }
  return false;
}

/**
 * The worker that sent the latest destructive call (found through the client port the proxy saw
 * and /proc), so that "kill one worker" hits the one with work in hand; a random one otherwise.
 */
export function busyWorker(c: Cluster, rng: Rng): { worker: Managed; how: string } {
  const alive = c.workers.filter((w) => w.alive && w.pid > 0);
  const last = c.proxy.lastDestructive;
  if (last && Date.now() - last.at < 2_000) {
    const inode = clientSocketInode(last.remotePort, c.proxy.port);
    if (inode) {
      const w = alive.find((x) => ownsInode(x.pid, inode));
      if (w) return { worker: w, how: 'busy' };
    }
  }
  return { worker: rng.pick(alive.length ? alive : c.workers), how: 'random' };
}

export async function inject(c: Cluster, kind: FaultKind, rng: Rng): Promise<Injected> {
  switch (kind) {
    case 'none':
      return { note: 'no fault' };

    case 'kill-worker': {
      const { worker, how } = busyWorker(c, rng);
      const pid = worker.pid;
      await worker.kill9();
      await worker.start(); // the replacement
      return { note: `SIGKILL ${worker.name} (pid ${pid}, ${how}); replacement pid ${worker.pid}` };
    }

    case 'kill-all-workers': {
      const pids = c.workers.map((w) => w.pid);
      await Promise.all(c.workers.map((w) => w.kill9()));
      await Promise.all(c.workers.map((w) => w.start()));
      return { note: `SIGKILL pids ${pids.join(', ')}; restarted as ${c.workers.map((w) => w.pid).join(', ')}` };
    }

    case 'kill-api': {
      const pid = c.api.pid;
      await c.api.kill9();
      const t0 = Date.now();
      await c.api.start();
      return { note: `SIGKILL api (pid ${pid}); back after ${Date.now() - t0} ms` };
    }

    case 'stop-worker': {
      const { worker, how } = busyWorker(c, rng);
      // Longer than its job lock, so another worker takes its jobs over while it is frozen.
      const ms = Math.round(rng.float(2, 3) * c.o.lockMs);
      worker.signal('SIGSTOP');
      await sleep(ms);
      if (worker.alive) worker.signal('SIGCONT');
      return { note: `SIGSTOP ${worker.name} (pid ${worker.pid}, ${how}) for ${ms} ms, then SIGCONT` };
    }

    case 'kill-redis': {
      const down = rng.int(0, 1_000);
      await c.redis.kill9();
      await sleep(down);
      await c.redis.start();
      return { note: `SIGKILL redis, down ${down} ms, restarted on the same port and AOF dir` };
    }

    case 'restart-postgres': {
      const r = await c.pg.restartImmediate();
      return { note: `pg_ctl restart -m immediate (${r.ms} ms)` };
    }
  }
}
