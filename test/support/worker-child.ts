// Execution workers in a child process, started through the production entry (src/worker.ts,
// configured by environment variables only), so a test can SIGKILL a real worker at any instant.
//
// A worker must not outlive the test process, even one killed by a timeout (it would retry its
// connections forever): a small sh wrapper holds the read end of a pipe from this process and
// SIGKILLs the worker when the pipe closes. kill() signals the worker itself, not the wrapper.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { APPS_PROD_SECRET } from './secrets.ts';
import { TEST_SNAPSHOT_KEY } from './keys.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENTRY = fileURLToPath(new URL('../../src/worker.ts', import.meta.url));
const KEEP_LINES = 200;
// "$@" is the worker's command line; fd 3 keeps our pipe (a background list's stdin is /dev/null).
const WRAPPER =
  'exec 3<&0; "$@" & w=$!; echo "worker-pid $w"; ( read -r _ <&3; kill -9 "$w" 2>/dev/null ) & g=$!; wait "$w"; s=$?; kill "$g" 2>/dev/null; wait "$g"; exit "$s"';

export interface WorkerChildOptions {
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  signingSecret: string;
  /** BLASTGATE_WORKER_LOCK_MS: how soon a job of a dead worker is taken over. */
  lockMs?: number;
  concurrency?: number;
  /** Name shown in failure output. */
  name?: string;
  startTimeoutMs?: number;
  /** More environment variables for the worker. */
  env?: Record<string, string>;
  /** A command the worker is started under, e.g. ['nice', '-n', '15']. */
  launcher?: string[];
}

export interface WorkerChild {
  readonly name: string;
  /** The worker's own pid (0 until the wrapper reported it). */
  readonly pid: number;
  /** The sh wrapper around the worker. */
  readonly process: ChildProcess;
  /** Whether the process has exited (or was killed). */
  readonly exited: boolean;
  /** The last lines the child wrote (stdout and stderr), for failure messages. */
  output(): string;
  /** SIGKILL: no shutdown hook, no lock release, sockets closed by the kernel. Resolves on exit. */
  kill(): Promise<void>;
}

/** All children started by this module and not yet exited: a test's afterEach kills them. */
const live = new Set<WorkerChild>();

/** Spawns `node --import tsx src/worker.ts` and resolves once it logged 'workers started'. */
export async function spawnWorker(o: WorkerChildOptions): Promise<WorkerChild> {
  const name = o.name ?? 'worker';
  const command = [...(o.launcher ?? []), process.execPath, '--import', 'tsx', ENTRY];
  const child = spawn('sh', ['-c', WRAPPER, 'sh', ...command], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      NODE_ENV: 'test',
      DATABASE_URL: o.databaseUrl,
      REDIS_URL: o.redisUrl,
      BLASTGATE_QUEUE_PREFIX: o.queuePrefix,
      BLASTGATE_SIGNING_SECRET: o.signingSecret,
      BLASTGATE_SECRET_APPS_PROD: APPS_PROD_SECRET,
      // Outside embedded mode no host is allowed until listed: the test downstreams are local.
      BLASTGATE_DOWNSTREAM_ALLOW: '127.0.0.1,localhost',
      BLASTGATE_SNAPSHOT_KEY: TEST_SNAPSHOT_KEY,
      BLASTGATE_WORKER_LOCK_MS: String(o.lockMs ?? 1_500),
      BLASTGATE_WORKER_CONCURRENCY: String(o.concurrency ?? 4),
      LOG_LEVEL: process.env.WORKER_LOG ?? 'info',
      ...o.env,
    },
  });
  const lines: string[] = [];
  let pid = 0;
  let exited = false;
  let exitInfo = '';
  let onStarted: (() => void) | undefined;
  const keep = (prefix: string) => {
    let partial = '';
    return (buf: Buffer) => {
      const text = partial + buf.toString('utf8');
      const parts = text.split('\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        const m = /^worker-pid (\d+)$/.exec(line);
        if (m) {
          pid = Number(m[1]);
          continue;
        }
        lines.push(`${prefix}${line}`);
        if (lines.length > KEEP_LINES) lines.shift();
        if (line.includes('workers started')) onStarted?.();
      }
    };
  };
  child.stdout.on('data', keep(''));
  child.stderr.on('data', keep('[stderr] '));
  const exit = new Promise<void>((resolve) => {
    // The wrapper exits when the worker has; its status is the worker's (128 + n: killed by signal n).
    child.once('exit', (code) => {
      exited = true;
      exitInfo = `exited code=${code}${code !== null && code > 128 ? ` (signal ${code - 128})` : ''}`;
      child.stdin.end();
      resolve();
    });
  });
  const handle: WorkerChild = {
    name,
    get pid() {
      return pid;
    },
    process: child,
    get exited() {
      return exited;
    },
    output: () => `--- ${name} (pid ${pid}) ${exitInfo}\n${lines.join('\n')}`,
    async kill() {
      // SIGKILL to the worker itself (never process.kill(0): that is our own process group).
      if (!exited) {
        if (pid > 0) process.kill(pid, 'SIGKILL');
        else child.stdin.end(); // pid not seen yet: the wrapper's watcher kills it
      }
      await exit;
      live.delete(handle);
    },
  };
  live.add(handle);
  void exit.then(() => live.delete(handle));

  const timeoutMs = o.startTimeoutMs ?? 30_000;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} did not start within ${timeoutMs} ms`)), timeoutMs);
      onStarted = () => {
        clearTimeout(timer);
        resolve();
      };
      void exit.then(() => {
        clearTimeout(timer);
        reject(new Error(`${name} exited before it started`));
      });
    });
  } catch (err) {
    await handle.kill();
    throw new Error(`${(err as Error).message}\n${handle.output()}`);
  }
  return handle;
}

/** SIGKILLs every child still alive (afterEach/afterAll, also after a failed test). */
export async function killAllWorkers(): Promise<void> {
  await Promise.all([...live].map((w) => w.kill()));
}
