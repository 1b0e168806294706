// Shared bench plumbing: project-owned Postgres/Redis in a temp dir, and the API as a child
// process on 127.0.0.1 so its memory can be read from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { startLocalServices, type LocalServices } from '../src/embedded/local-services.ts';
import { migrate } from '../src/db/migrate.ts';

export const ROOT = resolve(import.meta.dirname, '..');

/** One statement (or a parameterless list of them) on a connection of its own. */
export async function sql(databaseUrl: string, text: string, params: unknown[] = []) {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    return await c.query(text, params);
  } finally {
    await c.end();
  }
}
/** Throw-away bench data: a fresh snapshot master key per run. */
export const BENCH_SNAPSHOT_KEY = randomBytes(32);

export async function benchServices(): Promise<LocalServices & { dir: string; dispose(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'blastgate-bench-'));
  // Durable PostgreSQL (fsync, synchronous_commit and full_page_writes on), as a deployment runs:
  // write throughput is measured with the commit flushes it really costs. BENCH_DURABILITY=fast
  // turns them off, for comparing the gate's own cost with the disk's.
  const durability = process.env.BENCH_DURABILITY === 'fast' ? 'fast' : 'durable';
  const s = await startLocalServices({ dir, durability, log: (m) => console.error(`[bench services] ${m}`) });
  console.log(
    `PostgreSQL durability: ${durability} (${durability === 'durable' ? 'fsync, synchronous_commit, full_page_writes on' : 'fsync, synchronous_commit, full_page_writes off'})`,
  );
  console.log(`PostgreSQL shared memory: ${sharedMemoryPages(join(dir, 'pg'))}`);
  await migrate(s.databaseUrl);
  return {
    ...s,
    dir,
    dispose: () => {
      const stopped = s.stop();
      if (!stopped.ok) console.error(`[bench services] ${stopped.message}`);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Whether the bench's PostgreSQL got huge pages for its shared memory (huge_pages = try, its
 * default, takes them only when the kernel has some reserved: vm.nr_hugepages). It changes the
 * figures: every new backend (a pooled connection opened again after 10 s idle, each parallel
 * worker) maps the shared buffers it reads one page fault at a time, ~12 µs per 4 KB page on this
 * machine, and a 100k-ID plan on a new connection took 1.83 s with 4 KB pages against 1.20–1.29 s
 * with 2 MB ones (README, Benchmarks).
 */
function sharedMemoryPages(pgData: string): string {
  try {
    const pid = readFileSync(join(pgData, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim();
    return readFileSync(`/proc/${pid}/maps`, 'utf8').includes('anon_hugepage')
      ? 'huge pages (2 MB)'
      : '4 KB pages (no huge pages reserved: vm.nr_hugepages is 0, or too few for shared_buffers)';
  } catch (err) {
    return `unknown (${(err as Error).message})`;
  }
}

export interface ApiProcess {
  url: string;
  pid: number;
  child: ChildProcess;
  adminToken: string;
  stop(): Promise<void>;
}

export async function startApi(env: {
  databaseUrl: string;
  redisUrl: string;
  extra?: Record<string, string>;
}): Promise<ApiProcess> {
  if (!existsSync(join(ROOT, 'dist', 'server.js'))) throw new Error('run `npm run build` first (npm run bench does)');
  const adminToken = 'bg_bench_admin_token_0000000000000';
  // The compiled server (npm run build), as production runs it: RSS without the TypeScript loader.
  // PORT=0: the kernel picks a free port, read back from the server's "listening on" line.
  // BENCH_NODE_ARGS: extra node flags for the API child (e.g. --cpu-prof to see where time goes).
  const nodeArgs = process.env.BENCH_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
  const child = spawn(process.execPath, [...nodeArgs, 'dist/server.js'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: env.databaseUrl,
      REDIS_URL: env.redisUrl,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      BLASTGATE_ADMIN_TOKEN: adminToken,
      BLASTGATE_SNAPSHOT_KEY: BENCH_SNAPSHOT_KEY.toString('base64'),
      ...env.extra,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => rej(new Error('API did not start within 60 s')), 60_000);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        res(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      rej(new Error(`API exited with ${code}`));
    });
  });
  child.stdout.on('data', (d: Buffer) => {
    if (process.env.BENCH_LOG_LEVEL) process.stderr.write(d);
  });
  return {
    url,
    pid: child.pid!,
    child,
    adminToken,
    stop: () =>
      new Promise((res) => {
        child.once('exit', () => res());
        child.kill('SIGTERM');
      }),
  };
}

/** V8's flags in `npm run worker` (package.json), so that the bench runs a worker as it is run. */
const WORKER_V8_FLAGS = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { worker: string } }
).scripts.worker
  .split(' ')
  .filter((f) => f.startsWith('--max-'));

/** A separate worker process (compiled `dist/worker.js`, as `npm run worker` runs it). */
export function startWorkerProcess(env: { databaseUrl: string; redisUrl: string; extra?: Record<string, string> }) {
  if (!existsSync(join(ROOT, 'dist', 'worker.js'))) throw new Error('run `npm run build` first (npm run bench does)');
  const child = spawn(process.execPath, [...WORKER_V8_FLAGS, 'dist/worker.js'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: env.databaseUrl,
      REDIS_URL: env.redisUrl,
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
      BLASTGATE_SNAPSHOT_KEY: BENCH_SNAPSHOT_KEY.toString('base64'),
      ...env.extra,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return {
    pid: child.pid!,
    stop: () =>
      new Promise<void>((res) => {
        if (child.exitCode !== null) return res();
        child.once('exit', () => res());
        child.kill('SIGTERM');
      }),
  };
}

export async function api<T>(
  base: string,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: r.status, body: (await r.json()) as T };
}

/** A token per role, created through the admin API. */
export async function roleTokens(a: ApiProcess) {
  const out: Record<string, string> = { admin: a.adminToken };
  for (const role of ['requester', 'approver', 'operator', 'viewer']) {
    const r = await api<{ token: string }>(a.url, a.adminToken, 'POST', '/v1/admin/tokens', {
      // Unique: benches share one database, and a name in use is refused (TOKEN_NAME_TAKEN).
      name: `bench-${role}-${randomBytes(4).toString('hex')}`,
      role,
    });
    // A refusal (a 503 while the API's start still weighs on its event loop, say) said nothing here:
    // the bench went on with an undefined token and failed later on a 401 (seen once).
    if (r.status !== 201) throw new Error(`creating the ${role} token answered ${r.status} ${JSON.stringify(r.body)}`);
    out[role] = r.body.token;
  }
  return out as Record<'admin' | 'requester' | 'approver' | 'operator' | 'viewer', string>;
}

/** Peak resident set size of a process so far (VmHWM), in MB. */
export function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/**
 * CPU seconds (user + system) a process has used so far (Linux /proc; NaN elsewhere): the part of
 * a timed run that was the process's own work, and not waiting on a machine shared with other load.
 */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** POSTs a body produced by a generator, streamed (never built whole in memory). */
export function streamPost(
  url: string,
  headers: Record<string, string>,
  body: Iterable<string>,
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((res, rej) => {
    const req = httpRequest(url, { method: 'POST', headers: { ...headers, 'transfer-encoding': 'chunked' } }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: r.headers }));
    });
    req.on('error', rej);
    const it = body[Symbol.iterator]();
    const pump = () => {
      for (let n = it.next(); !n.done; n = it.next()) if (!req.write(n.value)) return void req.once('drain', pump);
      req.end();
    };
    pump();
  });
}

export function table(title: string, rows: Record<string, string | number>[]) {
  console.log(`\n${title}`);
  console.table(rows);
}

/**
 * CPU used since a point, per item: the whole machine (user, system and interrupts; steal, time
 * the host gave to other guests, apart), PostgreSQL (every postgres process, with the backends
 * that exited) and Blastgate's node processes. Far steadier than items/s on this shared 2-core
 * machine, whose speed drifts by ±15% between runs: a change that saves work shows here first.
 */
export interface CpuSnapshot {
  busy: number;
  steal: number;
  postgres: number;
  blastgate: number;
}

export function cpuSnapshot(): CpuSnapshot {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f as [number, ...number[]];
  let postgres = 0;
  let blastgate = 0;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const x = stat
        .slice(stat.lastIndexOf(')') + 2)
        .split(' ')
        .map(Number);
      if (comm === 'postgres') postgres += x[11]! + x[12]! + x[13]! + x[14]!;
      else if (comm === 'node' && /dist\/(server|worker)\.js/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8')))
        blastgate += x[11]! + x[12]!;
    } catch {
      // gone meanwhile
    }
  }
  return { busy: user + nice! + system! + irq! + softirq!, steal: steal!, postgres, blastgate };
}

/** "machine 210 µs (PostgreSQL 120, Blastgate 70), steal 3%" per item since `from`. */
export function cpuPerItem(from: CpuSnapshot, items: number): string {
  const now = cpuSnapshot();
  // /proc counts in clock ticks of 10 ms.
  const us = (k: keyof CpuSnapshot) => Math.round(((now[k] - from[k]) * 10_000) / items);
  const stolen = now.steal - from.steal;
  const share = Math.round((100 * stolen) / Math.max(1, now.busy - from.busy + stolen));
  return `CPU per item: machine ${us('busy')} µs (PostgreSQL ${us('postgres')}, Blastgate ${us('blastgate')}), steal ${share}%`;
}
