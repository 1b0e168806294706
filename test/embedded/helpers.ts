// Real-process helpers for the embedded-mode tests: a temp data dir, `node --import tsx
// src/server.ts` as a child on free ports (127.0.0.1 only), and checks on the pids the local
// PostgreSQL and Redis write into their data dir.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { freePort, startLocalServices } from '../../src/embedded/local-services.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const ADMIN_TOKEN = 'bg_embedded_test_admin_token_000000';

export function tempDataDir(): string {
  return mkdtempSync(join(tmpdir(), 'blastgate-embedded-'));
}

let initialised: Promise<string> | undefined;

/**
 * A data folder as the first `npm start` leaves it: its PostgreSQL initialised (initdb), the
 * database created and migrated, shut down cleanly; nothing else (no admin token, no snapshot key,
 * no Redis data). For tests about what a start does after that first one (Ctrl-C, takeover,
 * shutdown): each would otherwise pay a durable initdb and every migration (about 7 s on a loaded
 * 2-core machine). The first start itself, and Ctrl-C while initdb runs, keep using tempDataDir().
 *
 * The folder is made once per test file by the product's own start (same initdb options, same
 * durability, same database) and copied with owner and modes kept. removeInitialised() deletes it.
 */
export async function initialisedDataDir(): Promise<string> {
  initialised ??= (async () => {
    const template = tempDataDir();
    const services = await startLocalServices({ dir: template, log: () => undefined });
    try {
      await migrate(services.databaseUrl);
    } catch (err) {
      services.stop();
      throw err;
    }
    const stopped = services.stop();
    if (!stopped.ok) throw new Error(`the template data folder's servers: ${stopped.message}`);
    return template;
  })();
  const template = await initialised;
  const dir = tempDataDir();
  const r = spawnSync('cp', ['-a', join(template, 'pg'), join(dir, 'pg')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cp -a ${template}/pg: ${r.stderr}`);
  // A first start has no server log yet: the copy starts without the template's.
  rmSync(join(dir, 'pg', 'server.log'), { force: true });
  return dir;
}

export async function removeInitialised(): Promise<void> {
  const template = await initialised?.catch(() => undefined);
  initialised = undefined;
  if (template) rmSync(template, { recursive: true, force: true });
}

/** A live process (a zombie counts as gone: it has exited, its parent has not collected it). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !'ZX'.includes(stat.charAt(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

export function postmasterPid(dir: string): number | undefined {
  const f = join(dir, 'pg', 'postmaster.pid');
  return existsSync(f) ? Number(readFileSync(f, 'utf8').split('\n')[0]) : undefined;
}

export function redisPid(dir: string): number | undefined {
  const f = join(dir, 'redis', 'redis.pid');
  return existsSync(f) ? Number(readFileSync(f, 'utf8')) : undefined;
}

export async function waitUntil(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SHOW fsync / synchronous_commit / full_page_writes on a running PostgreSQL. */
export async function durabilitySettings(databaseUrl: string): Promise<Record<string, string>> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const out: Record<string, string> = {};
    for (const s of ['fsync', 'synchronous_commit', 'full_page_writes', 'lc_collate', 'lc_ctype'])
      out[s] = String((await c.query(`SHOW ${s}`)).rows[0]?.[s]);
    return out;
  } finally {
    await c.end();
  }
}

export interface ServerChild {
  child: ChildProcess;
  /** Like Ctrl-C in a terminal: the signal goes to the server's whole process group. */
  signal(sig: NodeJS.Signals): void;
  /** stdout and stderr so far, interleaved. */
  output(): string;
  /** The API's base URL, from the "listening" banner. */
  readonly url: string;
  pgPort: number;
  redisPort: number;
  /** Resolves with the exit code (or signal name) once the child has exited. */
  exited: Promise<number | string>;
  waitForOutput(re: RegExp, ms: number): Promise<RegExpMatchArray>;
}

/** `node --import tsx src/server.ts` in embedded mode on `dir`, started, listening and its banner printed. */
export async function startServer(
  dir: string,
  env: Record<string, string> = {},
  o: SpawnOptions = {},
): Promise<ServerChild> {
  for (let attempt = 1; ; attempt++) {
    const server = await spawnServer(dir, env, o);
    try {
      // The banner's last line: the whole banner has arrived, not only its address.
      await server.waitForOutput(/listening on http:\/\/\S+[\s\S]*\n {2}Workers: .*\n/, 120_000);
      return server;
    } catch (err) {
      server.signal('SIGKILL');
      // A port found free (spawnServer) was taken before the server bound it, seconds later: another
      // process's connection got it as its source port (a CI run). Ports the test chose stay as they are.
      const picked = !('BLASTGATE_EMBEDDED_PG_PORT' in env) && !('BLASTGATE_EMBEDDED_REDIS_PORT' in env);
      if (picked && attempt < 3 && /another process uses that port/.test(server.output())) {
        await server.exited;
        continue;
      }
      throw err;
    }
  }
}

/**
 * `node --import tsx src/server.ts` in embedded mode on `dir`, just spawned, in a process group of
 * its own (as a terminal runs it). `url` is known once "listening on" has been printed.
 */
export interface SpawnOptions {
  /** Through `npm start`, as the README says (the child is then npm; the server its child). */
  viaNpm?: boolean;
}

export async function spawnServer(
  dir: string,
  env: Record<string, string> = {},
  o: SpawnOptions = {},
): Promise<ServerChild> {
  const pgPort = await freePort();
  let redisPort = await freePort();
  while (redisPort === pgPort) redisPort = await freePort();
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // Embedded mode: no external database or Redis, nothing of the caller's Blastgate settings.
    if (v === undefined || k === 'DATABASE_URL' || k === 'REDIS_URL' || k.startsWith('BLASTGATE_')) continue;
    childEnv[k] = v;
  }
  Object.assign(childEnv, {
    BLASTGATE_DATA_DIR: dir,
    HOST: '127.0.0.1',
    PORT: '0',
    BLASTGATE_EMBEDDED_PG_PORT: String(pgPort),
    BLASTGATE_EMBEDDED_REDIS_PORT: String(redisPort),
    BLASTGATE_ADMIN_TOKEN: ADMIN_TOKEN,
    LOG_LEVEL: 'info',
    ...env,
  });
  const [cmd, args] = o.viaNpm ? ['npm', ['start']] : [process.execPath, ['--import', 'tsx', 'src/server.ts']];
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | string>((res) =>
    child.once('exit', (code, signal) => res(code ?? signal ?? 'unknown')),
  );
  const waitForOutput = async (re: RegExp, ms: number) => {
    const end = Date.now() + ms;
    for (;;) {
      const m = re.exec(out);
      if (m) return m;
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before printing ${re}:\n${out}`);
      if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${re}; output:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  return {
    child,
    signal: (sig) => {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, sig);
    },
    output: () => out,
    get url() {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (!m) throw new Error('the server has not printed its address yet');
      return m[1]!;
    },
    pgPort,
    redisPort,
    exited,
    waitForOutput,
  };
}

/** Pids of a PostgreSQL running on `dir` and of a Redis on `redisPort`, from /proc. */
export function serversRunning(dir: string, redisPort: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || !pidAlive(pid)) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (cmd.includes(`-D ${join(dir, 'pg')} `) || cmd.startsWith(`/usr/bin/redis-server 127.0.0.1:${redisPort}`))
      found.push(pid);
  }
  return found;
}

/**
 * Test cleanup only: ends the PostgreSQL and Redis a test started in `dir` if the product left
 * them running (a failed assertion must not leak servers into the next test run), then removes
 * the dir.
 */
export async function cleanUp(dir: string, server?: ServerChild): Promise<void> {
  if (server && server.child.exitCode === null && server.child.signalCode === null) {
    server.signal('SIGKILL');
    await server.exited;
  }
  // What is left of its process group (a server orphaned by `npm start`, when a test fails).
  try {
    if (server?.child.pid) process.kill(-server.child.pid, 'SIGKILL');
  } catch {
    // The group is gone.
  }
  const pids: number[] = [];
  const found = server ? serversRunning(dir, server.redisPort).map((p) => [p, 'SIGKILL'] as const) : [];
  for (const [pid, signal] of [
    [redisPid(dir), 'SIGKILL'],
    [postmasterPid(dir), 'SIGQUIT'], // PostgreSQL's immediate shutdown: it ends its backends too
    ...found,
  ] as const) {
    if (pid !== undefined && pids.includes(pid)) continue;
    if (pid === undefined || !pidAlive(pid)) continue;
    pids.push(pid);
    process.kill(pid, signal);
  }
  await waitUntil(() => pids.every((p) => !pidAlive(p)), 30_000, 'leftover servers to end');
  rmSync(dir, { recursive: true, force: true });
}
