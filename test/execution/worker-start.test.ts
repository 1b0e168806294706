// A worker started against a database that lacks this build's migrations (the wrong database, or
// before the release step) refuses to start naming the database, instead of failing later on a
// missing table; the worker process exits 2 with that message. And `npm run worker` stops on a
// SIGTERM sent to npm alone.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import pino from 'pino';
import { inject, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.ts';
import { MIGRATIONS_DIR } from '../../src/db/migrate.ts';
import { startWorkers } from '../../src/worker-runtime.ts';
import { createTestDatabase } from '../support/db.ts';
import { TEST_SNAPSHOT_KEY, TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MIGRATIONS = readdirSync(MIGRATIONS_DIR, { withFileTypes: true }).filter((d) => d.isDirectory()).length;

async function emptyDatabase(): Promise<string> {
  const root = inject('pgRootUrl');
  const name = `empty_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: `${root}/postgres` });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return `${root}/${name}`;
}

/** A worker process (`cmd args`) on `databaseUrl` and the suite's Redis, in a process group of its own. */
function spawnWorker(cmd: string, args: string[], databaseUrl: string, logLevel: string) {
  const child = spawn(cmd, args, {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: databaseUrl,
      REDIS_URL: inject('redisUrl'),
      BLASTGATE_QUEUE_PREFIX: `bgt${randomBytes(4).toString('hex')}`,
      BLASTGATE_SNAPSHOT_KEY: TEST_SNAPSHOT_KEY,
      LOG_LEVEL: logLevel,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

describe('a worker on a database without the migrations', () => {
  it('startWorkers refuses with a ConfigError naming the database and the first missing migration', async () => {
    const databaseUrl = await emptyDatabase();
    const name = new URL(databaseUrl).pathname.slice(1);
    const started = startWorkers({
      databaseUrl,
      redisUrl: inject('redisUrl'),
      queuePrefix: `bgt${randomBytes(4).toString('hex')}`,
      concurrency: 1,
      downstream: { allow: ['127.0.0.1'], secrets: { secrets: new Map(), byType: new Map() } } as never,
      snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
      logger: pino({ level: 'silent' }),
    });
    await expect(started).rejects.toBeInstanceOf(ConfigError);
    await expect(started).rejects.toThrow(
      new RegExp(`The database ${name} on .* lacks ${MIGRATIONS} of this build's migrations \\(first: \\d+_init`),
    );
  });

  it('the worker process exits 2 with that message', async () => {
    const databaseUrl = await emptyDatabase();
    const { child, output } = spawnWorker(process.execPath, ['--import', 'tsx', 'src/worker.ts'], databaseUrl, 'warn');
    const code = await new Promise<number | null>((res) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        res(c);
      });
    });
    expect(output()).toMatch(/lacks \d+ of this build's migrations/);
    expect(output()).not.toMatch(/relation .* does not exist/);
    expect(code).toBe(2);
  });
});

/** The pids under `pid` (its children, theirs…), from /proc. */
function descendants(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return kids.flatMap((k) => [k, ...descendants(k)]);
}
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('npm run worker', () => {
  it('stops when SIGTERM is sent to the npm process alone (the script execs node: sh -c would not pass it on)', async () => {
    const databaseUrl = await createTestDatabase();
    const { child, output } = spawnWorker('npm', ['run', 'worker'], databaseUrl, 'info');
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    try {
      for (let i = 0; i < 600 && !output().includes('workers started'); i++) await sleep(100);
      expect(output()).toContain('workers started');
      const under = descendants(child.pid!);
      expect(under.length).toBeGreaterThan(0);
      process.kill(child.pid!, 'SIGTERM');
      await exited;
      for (let i = 0; i < 200 && under.some(alive); i++) await sleep(100);
      expect(under.filter(alive), output()).toEqual([]);
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // The group is gone.
      }
    }
  });

  it('one SIGTERM to the process group (npm passes it on, so the worker gets it twice) finishes gracefully', async () => {
    const databaseUrl = await createTestDatabase();
    const { child, output } = spawnWorker('npm', ['run', 'worker'], databaseUrl, 'info');
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    try {
      for (let i = 0; i < 600 && !output().includes('workers started'); i++) await sleep(100);
      expect(output()).toContain('workers started');
      const worker = descendants(child.pid!).at(-1)!;
      // What a supervisor signalling the group does: npm and the worker both get it, npm forwards it.
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
      for (let i = 0; i < 200 && alive(worker); i++) await sleep(100);
      expect(alive(worker)).toBe(false);
      // close-with-grace counted npm's copy as a second signal: "second SIGTERM, exiting", jobs abandoned.
      expect(output()).not.toMatch(/second (signal|SIGTERM)/);
      expect(output()).toContain('workers stopped');
    } finally {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // The group is gone.
      }
    }
  });
});
