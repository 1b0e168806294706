// The system under test, as separate processes, set up once per chaos run: its own PostgreSQL and
// Redis, migrations applied, the API (`src/server.ts`) and two workers (`src/worker.ts`) with
// BLASTGATE_WORKERS_IN_PROCESS=false, and a real downstream HTTP service (test/support/downstream.ts)
// behind the recording proxy, in this process. Everything listens on 127.0.0.1 only.
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.ts';
import { freePort } from '../../src/embedded/local-services.ts';
import { startDownstream, type Downstream } from '../support/downstream.ts';
import { TEST_SNAPSHOT_KEY } from '../support/keys.ts';
import { condense, Managed, sleep, type ExitRecord } from './procs.ts';
import { startRecordingProxy, type RecordingProxy } from './recording-proxy.ts';
import type { Rng } from './rng.ts';
import { OwnPostgres, ownRedis, removeDir, startGuardian } from './services.ts';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export type Role = 'requester' | 'approver' | 'operator' | 'viewer' | 'admin';

export interface ClusterOptions {
  /** BLASTGATE_WORKER_LOCK_MS: how soon a job of a dead or frozen worker is taken over. */
  lockMs: number;
  workerConcurrency: number;
  workers: number;
  /** Latency the proxy adds to every downstream call. */
  latencyMs: [number, number];
  rng: Rng;
  /** Which trial a resource ID belongs to. */
  tagOf: (resourceId: string) => string | undefined;
  log: (line: string) => void;
}

export interface ApiResponse {
  status: number;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

export class ApiUnreachable extends Error {}

export class Cluster {
  dir = '';
  pg!: OwnPostgres;
  redis!: ReturnType<typeof ownRedis>;
  api!: Managed;
  workers: Managed[] = [];
  downstream!: Downstream;
  proxy!: RecordingProxy;
  apiUrl = '';
  databaseUrl = '';
  readonly secret = `chaos-signing-secret-${randomBytes(16).toString('hex')}`;
  readonly adminToken = `bg_chaos_admin_${randomBytes(16).toString('hex')}`;
  readonly prefix = `chaos${randomBytes(3).toString('hex')}`;
  tokens = {} as Record<Role, string>;
  /** Every unplanned process exit, in order. */
  readonly crashes: ExitRecord[] = [];
  private guardian: ChildProcess | undefined;
  private closed = false;

  private constructor(readonly o: ClusterOptions) {}

  /** `created` gets the cluster before it boots, so that a signal during start-up can tear it down. */
  static async start(o: ClusterOptions, created?: (c: Cluster) => void): Promise<Cluster> {
    const c = new Cluster(o);
    created?.(c);
    try {
      await c.boot();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  private async boot() {
    const { log } = this.o;
    const t0 = Date.now();
    this.dir = mkdtempSync(join(tmpdir(), 'blastgate-chaos-'));
    this.pg = new OwnPostgres(this.dir);
    await this.pg.init();
    this.guardian = startGuardian(this.pg, this.dir);
    await this.pg.start();
    const admin = new pg.Client({ connectionString: this.pg.rootUrl() });
    await admin.connect();
    await admin.query('CREATE DATABASE blastgate');
    await admin.end();
    this.databaseUrl = this.pg.rootUrl('blastgate');
    await migrate(this.databaseUrl);
    log(`postgres on 127.0.0.1:${this.pg.port} (fsync off), migrated in ${Date.now() - t0} ms`);

    const onCrash = (r: ExitRecord) => {
      this.crashes.push(r);
      log(`!! ${r.name} (pid ${r.pid}) exited on its own, code ${r.code}; restarting it. Last lines:`);
      for (const l of r.tail.slice(-12)) log(`   | ${condense(l)}`);
    };
    this.redis = ownRedis(join(this.dir, 'redis'), await freePort(), onCrash);
    await this.redis.start();
    log(`redis on ${this.redis.url} (appendonly, appendfsync always, noeviction)`);

    this.downstream = await startDownstream({ secret: this.secret });
    this.proxy = await startRecordingProxy({
      target: this.downstream.url,
      latencyMs: this.o.latencyMs,
      rng: this.o.rng.fork(),
      tagOf: this.o.tagOf,
    });
    // The adapter calls the proxy, so that is the host its signatures are made for.
    this.downstream.expectHost(new URL(this.proxy.url).host);
    log(`downstream on ${this.downstream.url}, behind the recording proxy on ${this.proxy.url}`);

    const apiPort = await freePort();
    this.apiUrl = `http://127.0.0.1:${apiPort}`;
    const env = (logLevel: string): Record<string, string> => ({
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      DATABASE_URL: this.databaseUrl,
      REDIS_URL: this.redis.url,
      BLASTGATE_WORKERS_IN_PROCESS: 'false',
      BLASTGATE_ADMIN_TOKEN: this.adminToken,
      BLASTGATE_SIGNING_SECRET: this.secret,
      // Not embedded: no host is allowed until listed. The proxy (and the downstream) are local.
      BLASTGATE_DOWNSTREAM_ALLOW: '127.0.0.1',
      BLASTGATE_SNAPSHOT_KEY: TEST_SNAPSHOT_KEY,
      BLASTGATE_QUEUE_PREFIX: this.prefix,
      BLASTGATE_WORKER_LOCK_MS: String(this.o.lockMs),
      BLASTGATE_WORKER_CONCURRENCY: String(this.o.workerConcurrency),
      BLASTGATE_DATA_DIR: join(this.dir, 'data'),
      HOST: '127.0.0.1',
      PORT: String(apiPort),
      LOG_LEVEL: logLevel,
    });
    this.api = new Managed(
      {
        name: 'api',
        command: process.execPath,
        args: ['--import', 'tsx', 'src/server.ts'],
        cwd: ROOT,
        // warn: the API's per-request info logs would cost CPU on a 2-core box for nothing.
        env: env('warn'),
        readyLine: 'Blastgate is listening',
        readyCheck: async () => (await this.request('GET', '/readyz', { timeoutMs: 3_000 })).status === 200,
      },
      { autoRestart: true, onCrash },
    );
    for (let i = 1; i <= this.o.workers; i++)
      this.workers.push(
        new Managed(
          {
            name: `worker-${i}`,
            command: process.execPath,
            args: ['--import', 'tsx', 'src/worker.ts'],
            cwd: ROOT,
            env: env('info'),
            readyLine: 'workers started',
          },
          { autoRestart: true, onCrash },
        ),
      );
    await Promise.all([this.api.start(), ...this.workers.map((w) => w.start())]);
    log(
      `api on ${this.apiUrl}, ${this.workers.length} workers (lock ${this.o.lockMs} ms), up after ${Date.now() - t0} ms`,
    );

    for (const role of ['requester', 'approver', 'operator', 'viewer'] as const) {
      const r = await this.call('POST', '/v1/admin/tokens', {
        token: this.adminToken,
        body: { name: `chaos-${role}`, role },
      });
      if (r.status !== 201) throw new Error(`token for ${role}: ${r.status} ${JSON.stringify(r.body)}`);
      this.tokens[role] = r.body.token as string;
    }
    this.tokens.admin = this.adminToken;
    const types = await this.call('PUT', '/v1/registry/types', {
      token: this.adminToken,
      body: {
        types: [
          {
            name: 'app',
            idPattern: '^app_[a-z0-9]+$',
            adapter: {
              kind: 'http',
              baseUrl: this.proxy.url,
              // With the tenant: the downstream knows it from the first read (the drill compares reads).
              snapshot: 'GET /apps/{id}?tenantId={tenantId}',
              softDelete: 'POST /apps/{id}/soft-delete',
              restore: 'POST /apps/{id}/restore',
              hardDelete: 'DELETE /apps/{id}',
              probe: 'GET /tenants/{tenantId}/health',
              // Generous: a 2-core box under faults must not turn slow answers into item failures.
              timeoutMs: 5_000,
              retries: 3,
              retryBaseMs: 20,
            },
          },
        ],
      },
    });
    if (types.status !== 200) throw new Error(`PUT /v1/registry/types: ${types.status} ${JSON.stringify(types.body)}`);
  }

  /** One HTTP request to the API; throws ApiUnreachable when no answer came (refused, reset, timeout). */
  async request(
    method: string,
    path: string,
    opts: { token?: string; body?: unknown; headers?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<ApiResponse> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(this.apiUrl + path, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw new ApiUnreachable(`${method} ${path}: ${(err as Error).message}`);
    }
    const text = await res.text().catch(() => '');
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    return { status: res.status, body };
  }

  /**
   * A request retried while the API is unreachable or answers 5xx (it may be restarting, or its
   * database may be), until `deadlineMs`. Only for requests that are safe to repeat; callers of
   * commands check the outcome themselves.
   */
  async call(
    method: string,
    path: string,
    opts: { token?: string; body?: unknown; headers?: Record<string, string>; deadlineMs?: number } = {},
  ): Promise<ApiResponse> {
    const deadline = Date.now() + (opts.deadlineMs ?? 60_000);
    let last = '';
    for (;;) {
      try {
        const r = await this.request(method, path, opts);
        if (r.status < 500) return r;
        last = `${r.status} ${JSON.stringify(r.body)}`;
      } catch (err) {
        if (!(err instanceof ApiUnreachable)) throw err;
        last = err.message;
      }
      if (Date.now() > deadline)
        throw new ApiUnreachable(`${method} ${path} gave no usable answer in time; last: ${last}`);
      await sleep(200);
    }
  }

  managed(): Managed[] {
    return [this.redis, this.api, ...this.workers];
  }

  /** Before a trial: every process up (restarting what is down), PostgreSQL up, the API ready. */
  async ensureHealthy(timeoutMs = 90_000): Promise<string[]> {
    const notes: string[] = [];
    const deadline = Date.now() + timeoutMs;
    if (!(await this.pg.isUp())) {
      notes.push('postgres was down: started it');
      await this.pg.start();
    }
    for (const m of this.managed()) {
      await m.settled();
      if (m.stopped) m.signal('SIGCONT');
      if (!m.alive) {
        notes.push(`${m.name} was down: started it`);
        await m.start();
      }
    }
    while ((await this.request('GET', '/readyz', { timeoutMs: 3_000 }).catch(() => ({ status: 0 }))).status !== 200) {
      if (Date.now() > deadline) throw new Error('the API never became ready');
      await sleep(200);
    }
    return notes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const m of [this.api, ...this.workers]) if (m) await m.close().catch(() => undefined);
    if (this.redis) await this.redis.close().catch(() => undefined);
    await this.proxy?.close().catch(() => undefined);
    await this.downstream?.close().catch(() => undefined);
    this.shutdownServices();
  }

  /** Synchronous teardown for 'exit' handlers and signals. */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of [this.api, this.redis, ...this.workers]) m?.killSync();
    this.shutdownServices();
  }

  private shutdownServices() {
    if (this.pg?.port) this.pg.stopSync();
    if (this.dir) removeDir(this.dir);
    this.guardian?.stdin?.end();
  }
}
