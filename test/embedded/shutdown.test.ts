// Ctrl-C on the zero-config start (`npm start` → src/server.ts, embedded mode) stops the
// PostgreSQL and Redis that start owns — also when the API's own shutdown hangs — and says only
// what is true. Real processes throughout: the server is a child process, the local servers are
// checked by the pids they write into the data dir.
import { request as httpRequest, type ClientRequest } from 'node:http';
import { createServer } from 'node:net';
import { freePort } from '../../src/embedded/local-services.ts';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import {
  ADMIN_TOKEN,
  cleanUp,
  durabilitySettings,
  initialisedDataDir,
  pidAlive,
  postmasterPid,
  redisPid,
  removeInitialised,
  serversRunning,
  spawnServer,
  startServer,
  tempDataDir,
  type ServerChild,
} from './helpers.ts';

const EXIT_MS = 90_000;

/** A registry import that keeps uploading: an in-flight request the API's shutdown waits for. */
function holdUpload(url: string): ClientRequest {
  const req = httpRequest(`${url}/v1/registry/resources`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      'content-type': 'application/x-ndjson',
      'transfer-encoding': 'chunked',
    },
  });
  req.on('error', () => undefined); // the server goes away mid-upload
  req.write('{"id":"site_1",');
  return req;
}
const UPLOAD_RECEIVED = /"url":"\/v1\/registry\/resources"[^\n]*"msg":"incoming request"/;

/** The server's exit code, or 'still running' after `ms`. */
function exitedWithin(server: ServerChild, ms = EXIT_MS) {
  return Promise.race([server.exited, new Promise((r) => setTimeout(() => r('still running'), ms))]);
}

function runningPids(dir: string) {
  const pg = postmasterPid(dir);
  const redis = redisPid(dir);
  expect(pg && pidAlive(pg), 'PostgreSQL runs').toBe(true);
  expect(redis && pidAlive(redis), 'Redis runs').toBe(true);
  return { pg: pg!, redis: redis! };
}

function expectStopped(output: string, pids: { pg: number; redis: number }) {
  // The product verified this before exiting: no polling here.
  expect(pidAlive(pids.pg), `PostgreSQL pid ${pids.pg} is gone`).toBe(false);
  expect(pidAlive(pids.redis), `Redis pid ${pids.redis} is gone`).toBe(false);
  expect(output).toContain(`stopped the local Redis (pid ${pids.redis}) and PostgreSQL (pid ${pids.pg})`);
  expect(output).not.toMatch(/could not stop/);
}

describe('Ctrl-C on the zero-config start', () => {
  let dir: string;
  let server: ServerChild | undefined;
  let upload: ClientRequest | undefined;
  afterEach(async () => {
    upload?.destroy();
    upload = undefined;
    await cleanUp(dir, server);
    server = undefined;
  });
  afterAll(removeInitialised);

  it('stops the PostgreSQL (durable) and Redis it started, and says so', { timeout: 240_000 }, async () => {
    dir = tempDataDir();
    server = await startServer(dir);
    const pids = runningPids(dir);
    expect(await durabilitySettings(`postgres://postgres@127.0.0.1:${server.pgPort}/blastgate`)).toEqual({
      fsync: 'on',
      synchronous_commit: 'on',
      full_page_writes: 'on',
      // IDs compare bytewise (src/db/collation.ts); case and character classes stay Unicode's.
      lc_collate: 'C',
      lc_ctype: 'C.UTF-8',
    });

    server.signal('SIGINT');
    expect(await exitedWithin(server)).toBe(0);
    expectStopped(server.output(), pids);
  });

  it(
    'SIGTERM to the `npm start` process alone (kill <pid>, not its group) stops the server and them',
    { timeout: 240_000 },
    async () => {
      // npm runs the script through `sh -c`, which does not pass the signal on: the server, orphaned,
      // went on answering with its PostgreSQL and Redis. The script execs node, so npm's child is it.
      dir = await initialisedDataDir();
      server = await startServer(dir, {}, { viaNpm: true });
      const pids = runningPids(dir);
      process.kill(server.child.pid!, 'SIGTERM');
      expect(await exitedWithin(server)).not.toBe('still running');
      expectStopped(server.output(), pids);
    },
  );

  it('takes over servers left running by an earlier start, says so, and stops them', { timeout: 240_000 }, async () => {
    dir = await initialisedDataDir();
    // An earlier start killed outright (kill -9 of its node process alone): its servers run on.
    const earlier = await startServer(dir);
    const left = runningPids(dir);
    earlier.child.kill('SIGKILL');
    await earlier.exited;
    expect(runningPids(dir)).toEqual(left);
    server = await startServer(dir);
    const out = server.output();
    expect(out).toMatch(
      new RegExp(`found a PostgreSQL left running by an earlier start \\(pid ${left.pg},[^\\n]*takes it over`),
    );
    expect(out).toMatch(
      new RegExp(`found a Redis left running by an earlier start \\(pid ${left.redis},[^\\n]*takes it over`),
    );
    const pids = runningPids(dir);
    expect(pids).toEqual(left);

    server.signal('SIGINT');
    expect(await exitedWithin(server)).toBe(0);
    expectStopped(server.output(), pids);
  });

  it(
    'given REDIS_URL, runs and stops only a local PostgreSQL, and stops a Redis an earlier start left',
    { timeout: 240_000 },
    async () => {
      dir = await initialisedDataDir();
      const earlier = await startServer(dir);
      const left = runningPids(dir);
      earlier.child.kill('SIGKILL');
      await earlier.exited;
      // An operator points this start at a Redis of theirs: it used to start (or take over) the
      // local one anyway and leave REDIS_URL's in charge of nothing but the queue.
      server = await startServer(dir, {
        REDIS_URL: inject('redisUrl'),
        BLASTGATE_QUEUE_PREFIX: `bg-embedded-${process.pid}-${Date.now()}`,
      });
      const out = server.output();
      expect(out).toContain(`embedded mode: starting local PostgreSQL under ${dir}/`);
      expect(out).toMatch(
        new RegExp(`found a Redis left running by an earlier start \\(pid ${left.redis}\\)[^\\n]*does not use it`),
      );
      expect(out).toMatch(new RegExp(`found a PostgreSQL left running by an earlier start \\(pid ${left.pg},`));
      expect(out).not.toMatch(/local Redis is up/);
      expect(pidAlive(left.redis)).toBe(false);
      expect(pidAlive(left.pg)).toBe(true);
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);

      server.signal('SIGINT');
      expect(await exitedWithin(server)).toBe(0);
      expect(pidAlive(left.pg)).toBe(false);
      expect(server.output()).toContain(`stopped the local PostgreSQL (pid ${left.pg})`);
      expect(server.output()).not.toMatch(/stopped the local Redis|could not stop/);
    },
  );

  it(
    'a REDIS_URL that leads nowhere stops the start (exit 2, named) and its local PostgreSQL',
    { timeout: 240_000 },
    async () => {
      dir = await initialisedDataDir();
      const port = await freePort();
      // It used to start, log Redis connection errors forever and move no work.
      server = await spawnServer(dir, { REDIS_URL: `redis://127.0.0.1:${port}`, BLASTGATE_QUEUE_PREFIX: 'own' });
      expect(await exitedWithin(server, 120_000)).toBe(2);
      const out = server.output();
      expect(out).toMatch(
        new RegExp(`REDIS_URL \\(redis://127\\.0\\.0\\.1:${port}\\) cannot be reached \\(waited 5 s\\)`),
      );
      expect(out).toMatch(/stopped the local PostgreSQL \(pid \d+\)/);
      expect(out).not.toMatch(/^\s+at /m);
      expect(serversRunning(dir, server.redisPort)).toEqual([]);
    },
  );

  it(
    'refuses a misspelt DATABASE_URL beside a shared REDIS_URL before starting anything, naming the typo',
    { timeout: 240_000 },
    async () => {
      dir = tempDataDir();
      // It started an empty local PostgreSQL whose workers took the real installation's jobs.
      server = await spawnServer(dir, {
        DATABSE_URL: 'postgres://blastgate@127.0.0.1:5432/blastgate',
        REDIS_URL: inject('redisUrl'),
      });
      expect(await exitedWithin(server, 60_000)).toBe(2);
      const out = server.output();
      expect(out).toContain('warning: DATABSE_URL is ignored (did you mean DATABASE_URL?)');
      expect(out).toContain('REDIS_URL is set but DATABASE_URL is not (DATABSE_URL is set: a typo?)');
      expect(out).not.toMatch(/embedded mode: starting/);
      expect(serversRunning(dir, server.redisPort)).toEqual([]);
    },
  );

  it('says so when its local PostgreSQL stops under it, and how to get it back', { timeout: 240_000 }, async () => {
    dir = await initialisedDataDir();
    server = await startServer(dir);
    const pids = runningPids(dir);
    // It answered 503 to every request and logged per-request warnings, never that PostgreSQL was gone.
    process.kill(pids.pg, 'SIGKILL');
    await server.waitForOutput(new RegExp(`the local PostgreSQL \\(pid ${pids.pg}\\) has stopped`), 30_000);
    expect(server.output()).toContain(`run npm start again: it starts PostgreSQL on the data kept in ${dir}/`);
    expect(server.output()).not.toMatch(/the local Redis \(pid \d+\) has stopped/);
  });

  it(
    'a PORT in use stops the start before anything runs: exit 2, named, no stack trace',
    { timeout: 240_000 },
    async () => {
      dir = tempDataDir();
      const port = await freePort();
      const taken = createServer();
      await new Promise<void>((r) => taken.listen(port, '127.0.0.1', r));
      try {
        // It started PostgreSQL and Redis, migrated, then printed a listen stack trace twice, exit 1.
        server = await spawnServer(dir, { PORT: String(port) });
        expect(await exitedWithin(server, 60_000)).toBe(2);
        const out = server.output();
        expect(out).toContain(`cannot listen on 127.0.0.1:${port} (HOST, PORT): another process uses PORT ${port}`);
        expect(out).not.toMatch(/embedded mode: starting|^\s+at /m);
        expect(serversRunning(dir, server.redisPort)).toEqual([]);
      } finally {
        await new Promise<void>((r) => taken.close(() => r()));
      }
    },
  );

  it(
    'refuses a second start on the folder of a live one, and leaves its servers alone',
    { timeout: 240_000 },
    async () => {
      dir = await initialisedDataDir();
      server = await startServer(dir);
      const pids = runningPids(dir);
      // A second `npm start` in the same checkout used to take them over and stop them on exit.
      const second = await spawnServer(dir);
      const code = await exitedWithin(second, 60_000);
      if (code === 'still running') second.signal('SIGKILL');
      expect(code).toBe(2);
      expect(second.output()).toContain(
        `Blastgate cannot start: another Blastgate (pid ${server.child.pid}) runs the local PostgreSQL and Redis in ${dir}`,
      );
      expect(second.output()).not.toMatch(/takes it over|stopped the local/);
      expect(runningPids(dir)).toEqual(pids);
      const ready = await fetch(`${server.url}/readyz`);
      expect(ready.status).toBe(200);

      server.signal('SIGINT');
      expect(await exitedWithin(server)).toBe(0);
      expectStopped(server.output(), pids);
    },
  );

  it('stops them when the API shutdown hangs past BLASTGATE_SHUTDOWN_TIMEOUT_MS', { timeout: 240_000 }, async () => {
    dir = await initialisedDataDir();
    server = await startServer(dir, { BLASTGATE_SHUTDOWN_TIMEOUT_MS: '2000' });
    const pids = runningPids(dir);
    upload = holdUpload(server.url);
    await server.waitForOutput(UPLOAD_RECEIVED, 30_000);

    server.signal('SIGINT');
    expect(await exitedWithin(server)).toBe(1);
    const out = server.output();
    expect(out).toMatch(/SIGINT: shutting down/);
    expect(out).toMatch(
      /shutdown did not finish within 2000 ms \(BLASTGATE_SHUTDOWN_TIMEOUT_MS\): exiting and stopping the local PostgreSQL and Redis/,
    );
    expectStopped(out, pids);
  });

  it('a second Ctrl-C during a hanging shutdown exits at once and still stops them', { timeout: 240_000 }, async () => {
    dir = await initialisedDataDir();
    server = await startServer(dir, { BLASTGATE_SHUTDOWN_TIMEOUT_MS: '600000' });
    const pids = runningPids(dir);
    upload = holdUpload(server.url);
    await server.waitForOutput(UPLOAD_RECEIVED, 30_000);

    server.signal('SIGINT');
    await server.waitForOutput(/SIGINT: shutting down/, 30_000);
    // A press of its own: the same press arrives twice within a second (below).
    await new Promise((r) => setTimeout(r, 1_200));
    server.signal('SIGINT');
    expect(await exitedWithin(server)).toBe(1);
    const out = server.output();
    expect(out).toMatch(/second SIGINT: exiting now and stopping the local PostgreSQL and Redis/);
    expectStopped(out, pids);
  });

  it(
    'one Ctrl-C that arrives twice (the terminal, then npm forwarding it) shuts down gracefully',
    { timeout: 240_000 },
    async () => {
      dir = await initialisedDataDir();
      server = await startServer(dir);
      const pids = runningPids(dir);
      // A terminal's Ctrl-C reaches the whole process group; `npm start` passes it on to node too.
      server.signal('SIGINT');
      await new Promise((r) => setTimeout(r, 5));
      server.signal('SIGINT');
      expect(await exitedWithin(server)).toBe(0);
      const out = server.output();
      expect(out).toMatch(/SIGINT: shutting down/);
      expect(out).not.toMatch(/second SIGINT/);
      expectStopped(out, pids);
    },
  );

  // Ctrl-C during start-up, at three moments: whichever way the process ends (the signal also hits
  // initdb / pg_ctl, as in a terminal), nothing stays running and the output says why it ended.
  it.each([
    ['before the local servers are up', /embedded mode: starting local/],
    ['while the local servers start', /local PostgreSQL is up/],
    ['as soon as the banner appears', /listening on/],
  ])('Ctrl-C %s leaves nothing running', { timeout: 240_000 }, async (_when, trigger) => {
    dir = tempDataDir();
    server = await spawnServer(dir);
    const s = server;
    let sent = false;
    s.child.stdout!.on('data', () => {
      if (sent || !trigger.test(s.output())) return;
      sent = true;
      s.signal('SIGINT');
    });
    const code = await exitedWithin(s);
    expect(code, s.output()).not.toBe('still running');
    expect(serversRunning(dir, s.redisPort), s.output()).toEqual([]);
    const out = s.output();
    expect(out).not.toMatch(/could not stop/);
    // It says what happened (no stack trace of a child process the Ctrl-C also hit).
    expect(out).toMatch(/SIGINT/);
    expect(out).not.toMatch(/^\s+at /m);
    for (const m of out.matchAll(/stopped the local (Redis|PostgreSQL) \(pid (\d+)\)/g))
      expect(pidAlive(Number(m[2])), m[0]).toBe(false);
  });
});
