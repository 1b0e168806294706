// A separate worker process lowers its own CPU priority (BLASTGATE_WORKER_NICE, 10 unless set), so
// that on a host it shares with the API the operators' reads and commands are served first: every
// thread of it (V8's and libuv's too), and never raising a priority it was started below.
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lowerLocalBackend, lowerPriority } from '../../src/lib/priority.ts';
import { query } from '../support/seed.ts';
import { buildExecHarness, type ExecHarness } from '../support/execution.ts';
import { killAllWorkers, spawnWorker } from '../support/worker-child.ts';

let h: ExecHarness;

/** The nice value of a thread (field 19 of its stat; the name in field 2 may hold spaces). */
const niceOf = (path: string) => Number(readFileSync(path, 'utf8').split(') ')[1]!.split(' ')[16]);
const threadNices = (pid: number) =>
  readdirSync(`/proc/${pid}/task`).map((tid) => niceOf(`/proc/${pid}/task/${tid}/stat`));

beforeAll(async () => {
  h = await buildExecHarness({ workers: 0 });
});
afterAll(async () => {
  await killAllWorkers();
  await h?.close();
});

const start = (env: Record<string, string>, launcher?: string[]) =>
  spawnWorker({
    databaseUrl: h.databaseUrl,
    redisUrl: h.redisUrl,
    queuePrefix: h.prefix,
    signingSecret: 'worker-nice-test-secret-0000000000',
    env,
    ...(launcher ? { launcher } : {}),
  });

describe('worker process priority', () => {
  it.each([
    [undefined, 10],
    ['0', 0],
    ['19', 19],
  ])('BLASTGATE_WORKER_NICE=%s: every thread of the worker runs at nice %i, and it says so', async (set, nice) => {
    const w = await start(set === undefined ? {} : { BLASTGATE_WORKER_NICE: set });
    try {
      const nices = threadNices(w.pid);
      expect(nices.length).toBeGreaterThan(1);
      expect(new Set(nices)).toEqual(new Set([nice]));
      expect(w.output()).toMatch(new RegExp(`"nice":${nice}\\b`));
    } finally {
      await w.kill();
    }
  });

  it('a worker started at a lower priority than configured keeps it (nice 15, configured 10)', async () => {
    const w = await start({}, ['nice', '-n', '15']);
    try {
      expect(new Set(threadNices(w.pid))).toEqual(new Set([15]));
      expect(w.output()).toMatch(/"nice":15\b/);
    } finally {
      await w.kill();
    }
  });

  it("lowers its connections' PostgreSQL backends too when PostgreSQL runs on this host; the API's stay as they are", async () => {
    const w = await start({ BLASTGATE_WORKER_NICE: '7' });
    try {
      // The worker's pool connects as it starts (migration and key checks, the reconcile loop).
      // Of this file's database only: workers of test files running beside it use the same server.
      const backends = async (app: string) =>
        (
          await query<{ pid: number }>(
            h.databaseUrl,
            `SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()`,
            [app],
          )
        ).map((r) => r.pid);
      const workers = await backends('blastgate-worker');
      expect(workers.length).toBeGreaterThan(0);
      expect(new Set(workers.map((pid) => niceOf(`/proc/${pid}/stat`)))).toEqual(new Set([7]));
      // This test's own API (its pools) is served at the priority PostgreSQL started with.
      await h.app.db.control.pool.query('SELECT 1'); // a connection of it (idle ones close after 10 s)
      const api = await backends('blastgate-control');
      expect(api.length).toBeGreaterThan(0);
      expect(new Set(api.map((pid) => niceOf(`/proc/${pid}/stat`)))).toEqual(new Set([0]));
      expect(w.output()).toContain("the workers' backends run at this nice value");
    } finally {
      await w.kill();
    }
  });

  it('touches only a process whose title names this connection on a loopback address', () => {
    const title = (t: string) => () => t;
    // A pid a remote server reported that exists here as something else, another connection's
    // backend, a backend of a connection from elsewhere: none of them is lowered.
    expect(lowerLocalBackend(process.pid, 5432, 5, title('node server.js'))).toBe('not-local');
    expect(lowerLocalBackend(process.pid, 5432, 5, title('postgres: u db 127.0.0.1(5433) idle'))).toBe('not-local');
    expect(lowerLocalBackend(process.pid, 5432, 5, title('postgres: u db 10.1.2.3(5432) idle'))).toBe('not-local');
    expect(
      lowerLocalBackend(2 ** 30, 5432, 5, () => {
        throw new Error('ENOENT');
      }),
    ).toBe('not-local');
    expect(lowerLocalBackend(process.pid, undefined, 5, title('postgres: u db 127.0.0.1(5432) idle'))).toBe(
      'not-local',
    );
  });

  it('a thread that ended meanwhile is no problem', () => {
    // No process has this ID: the lookup fails with ESRCH, which is not an error worth reporting.
    expect(lowerPriority(0, () => [2 ** 30])).toEqual({ now: expect.any(Number) });
  });
});
