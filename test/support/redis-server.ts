// A redis-server of a test's own (the suite's shared one must never be restarted under other test
// files): a child process on 127.0.0.1, a port of its own, AOF persistence in a temp dir, so a test
// can stop it (gracefully or with SIGKILL) and start it again on the same port, with or without
// its data.
//
// It must not outlive the test process, even one killed by a timeout: a small sh wrapper holds
// the read end of a pipe from this process and SIGKILLs the server when the pipe closes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinaries, freePort } from '../../src/embedded/local-services.ts';

export interface OwnRedis {
  readonly url: string;
  readonly port: number;
  /** The data dir now in use. */
  readonly dir: string;
  /** SIGTERM: Redis shuts down cleanly (AOF flushed). SIGKILL: a crash. Resolves on exit. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /**
   * SIGSTOP / SIGCONT: a Redis that holds its connections open and answers nothing (a hung host, a
   * network partition), unlike a stopped one, which refuses at once.
   */
  freeze(): void;
  thaw(): void;
  /** Starts again on the same port: with the same dir (data kept), or a fresh empty one. */
  start(o?: { freshDir?: boolean }): Promise<void>;
  /** Stops it for good and removes its dirs. */
  destroy(): Promise<void>;
}

export async function startOwnRedis(): Promise<OwnRedis> {
  const bin = ensureBinaries(() => undefined).redisServer;
  const port = await freePort();
  const dirs: string[] = [];
  let dir = '';
  let proc: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  const newDir = () => {
    dir = mkdtempSync(join(tmpdir(), 'blastgate-redis-'));
    dirs.push(dir);
  };

  // "$@" is the server command line. fd 3 keeps our pipe, since a background list's stdin is
  // /dev/null; its EOF (we end it, or this process is gone) kills the server.
  const WRAPPER =
    'exec 3<&0; "$@" & r=$!; echo "redis-pid $r"; ( read -r _ <&3; kill -9 "$r" 2>/dev/null ) & g=$!; wait "$r"; s=$?; kill "$g" 2>/dev/null; wait "$g"; exit "$s"';
  let pid = 0;

  async function start(o: { freshDir?: boolean } = {}) {
    if (proc) throw new Error('redis-server is already running');
    if (o.freshDir || !dir) newDir();
    log = '';
    const p = spawn(
      'sh',
      [
        '-c',
        WRAPPER,
        'sh',
        bin,
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--maxmemory-policy',
        'noeviction',
        '--save',
        '',
        '--daemonize',
        'no',
        '--protected-mode',
        'yes',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    proc = p;
    pid = 0;
    exited = new Promise((resolve) =>
      p.once('exit', () => {
        proc = undefined;
        p.stdin.end();
        resolve();
      }),
    );
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server did not become ready:\n${log}`)), 15_000);
      const onData = (b: Buffer) => {
        log += b.toString('utf8');
        const m = /redis-pid (\d+)/.exec(log);
        if (m && !pid) pid = Number(m[1]);
        if (pid && log.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      };
      p.stdout.on('data', onData);
      p.stderr.on('data', onData);
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited while starting:\n${log}`));
      });
    });
    await ready;
  }

  async function stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') {
    if (!proc) return;
    // The signal goes to the server itself; the wrapper exits when the server has. (Never
    // process.kill(0): that is our whole process group.)
    if (pid > 0) process.kill(pid, signal);
    else proc.stdin?.end(); // not started far enough to know its pid: the watcher kills it
    await exited;
  }

  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get dir() {
      return dir;
    },
    stop,
    start,
    freeze: () => pid > 0 && process.kill(pid, 'SIGSTOP'),
    thaw: () => pid > 0 && process.kill(pid, 'SIGCONT'),
    async destroy() {
      if (pid > 0) process.kill(pid, 'SIGCONT');
      await stop('SIGKILL');
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
}
