// The API in a child process, started through the production entry (src/server.ts, configured by
// environment variables only), so a test can SIGKILL it mid-request. Like worker-child.ts, a small
// sh wrapper SIGKILLs it when this process goes away, so it never outlives the test run.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { TEST_SNAPSHOT_KEY } from './keys.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ENTRY = fileURLToPath(new URL('../../src/server.ts', import.meta.url));
const WRAPPER =
  'exec 3<&0; "$@" & w=$!; echo "api-pid $w"; ( read -r _ <&3; kill -9 "$w" 2>/dev/null ) & g=$!; wait "$w"; s=$?; kill "$g" 2>/dev/null; wait "$g"; exit "$s"';
const KEEP_LINES = 100;

export interface ApiChild {
  port: number;
  /** SIGKILL: no shutdown hook, no cleanup. Resolves once it has exited. */
  kill(): Promise<void>;
  /** Sends `signal` to the server process itself (a graceful shutdown); resolves with its exit code. */
  stop(signal: 'SIGINT' | 'SIGTERM'): Promise<number | null>;
  output(): string;
}

export async function startApiChild(o: {
  databaseUrl: string;
  redisUrl: string;
  queuePrefix: string;
  adminToken: string;
  startTimeoutMs?: number;
  /** More environment for this API (limits, for instance). */
  env?: Record<string, string>;
}): Promise<ApiChild> {
  const child = spawn('sh', ['-c', WRAPPER, 'sh', process.execPath, '--import', 'tsx', ENTRY], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      ...process.env,
      DATABASE_URL: o.databaseUrl,
      REDIS_URL: o.redisUrl,
      HOST: '127.0.0.1',
      PORT: '0',
      BLASTGATE_WORKERS_IN_PROCESS: 'false',
      BLASTGATE_ADMIN_TOKEN: o.adminToken,
      BLASTGATE_QUEUE_PREFIX: o.queuePrefix,
      BLASTGATE_SNAPSHOT_KEY: TEST_SNAPSHOT_KEY,
      LOG_LEVEL: 'warn',
      ...o.env,
    },
  });
  const lines: string[] = [];
  let pid = 0;
  let onListening: ((port: number) => void) | undefined;
  const keep = (buf: Buffer) => {
    for (const line of buf.toString('utf8').split('\n')) {
      const p = /^api-pid (\d+)$/.exec(line);
      if (p) pid = Number(p[1]);
      const l = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (l) onListening?.(Number(l[1]));
      lines.push(line);
      if (lines.length > KEEP_LINES) lines.shift();
    }
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  // The wrapper exits with the server's status.
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const exit = exited.then(() => undefined);
  const stop = async (signal: 'SIGINT' | 'SIGTERM') => {
    if (pid > 0) process.kill(pid, signal);
    return exited;
  };
  const kill = async () => {
    if (pid > 0) process.kill(pid, 'SIGKILL');
    child.stdin.end();
    await exit;
  };
  const timeoutMs = o.startTimeoutMs ?? 60_000;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the API did not start within ${timeoutMs} ms`)), timeoutMs);
      onListening = (p) => {
        clearTimeout(timer);
        resolve(p);
      };
      void exit.then(() => {
        clearTimeout(timer);
        reject(new Error('the API exited before it listened'));
      });
    });
    return { port, kill, stop, output: () => lines.join('\n') };
  } catch (err) {
    await kill();
    throw new Error(`${(err as Error).message}\n${lines.join('\n')}`);
  }
}
