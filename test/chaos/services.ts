// The chaos run's own PostgreSQL 15 (test/support/pg-server.ts) and Redis 7, in a temp dir, on free
// 127.0.0.1 ports, with the controls the faults need: `pg_ctl restart -m immediate`, and SIGKILL +
// restart of Redis on the same port with the same append-only file.
//
// Every command here runs asynchronously: the downstream service lives in this process, and a
// blocking spawnSync during a fault would freeze it too (an extra, unintended fault).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { ensureBinaries } from '../../src/embedded/local-services.ts';
import { asPostgres, OwnPostgres } from '../support/pg-server.ts';
import { Managed, type ExitRecord } from './procs.ts';

export { OwnPostgres };

/** Redis as a supervised child (foreground, under the wrapper), on a fixed port and AOF dir. */
export function ownRedis(
  dir: string,
  port: number,
  onCrash: (r: ExitRecord) => void,
): Managed & { url: string; dir: string } {
  const bin = ensureBinaries(() => undefined).redisServer;
  mkdirSync(dir, { recursive: true });
  const m = new Managed(
    {
      name: 'redis',
      command: bin,
      args: [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        // Every write is on disk before Redis answers: a SIGKILL then loses nothing acknowledged.
        '--appendfsync',
        'always',
        // BullMQ is only correct when Redis never evicts keys.
        '--maxmemory-policy',
        'noeviction',
        '--save',
        '',
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
      ],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      readyLine: 'Ready to accept connections',
      startTimeoutMs: 30_000,
    },
    { autoRestart: true, onCrash },
  );
  return Object.assign(m, { url: `redis://127.0.0.1:${port}`, dir });
}

/**
 * A watchdog that outlives a harness killed with SIGKILL: it waits for EOF on a pipe from this
 * process, then stops PostgreSQL (which pg_ctl runs detached from us) and removes the temp dir.
 * Its own process group, and SIGINT/SIGTERM/SIGHUP ignored, so a Ctrl-C does not take it down first.
 */
export function startGuardian(pg: OwnPostgres, dir: string): ChildProcess {
  const [c, a] = asPostgres(pg.pgCtl, ['-D', pg.data, '-m', 'immediate', '-w', '-t', '30', 'stop']);
  const stop = [c, ...a].map((s) => `'${s.replace(/'/g, `'\\''`)}'`).join(' ');
  const g = spawn('sh', ['-c', `trap '' INT TERM HUP; read -r _; ${stop} >/dev/null 2>&1; rm -rf "$1"`, 'sh', dir], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  g.stdin.on('error', () => undefined);
  g.unref();
  return g;
}

export function removeDir(dir: string) {
  rmSync(dir, { recursive: true, force: true });
}
