// A Blastgate process that dies mid-statement (kill -9, an OOM, a lost host) must not leave its
// statement running in PostgreSQL: PostgreSQL notices a vanished client only when it next reads
// or writes the socket, so a 1M-ID classification or a wave's chunk went on for seconds, holding
// its row locks (the next plan of the same IDs waited on them) and a CPU. Every pool Blastgate
// opens asks PostgreSQL to check the client's socket while a statement runs.
import { connect, createServer, type Socket } from 'node:net';
import { finished } from 'node:stream/promises';
import { Redis } from 'ioredis';
import type { FastifyRequest } from 'fastify';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/embedded/local-services.ts';
import { ConfigError } from '../../src/config.ts';
import { databaseProblem } from '../../src/db/migrate.ts';
import { createDb, closeDb, type Db } from '../../src/plugins/db.ts';
import { toClientError } from '../../src/plugins/errors.ts';
import { createTestDatabase } from '../support/db.ts';

let url: string;
let db: Db;
let watcher: pg.Client;
beforeAll(async () => {
  url = await createTestDatabase();
  db = createDb(url, 2);
  watcher = new pg.Client({ connectionString: url });
  await watcher.connect();
});
afterAll(async () => {
  await watcher?.end();
  await closeDb(db);
});

const backendAlive = async (pid: number) =>
  (await watcher.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1`, [pid])).rowCount === 1;

describe('a client that vanishes mid-statement', () => {
  it('has its statement ended by PostgreSQL within seconds, not when the statement would end', async () => {
    const client = await db.pool.connect();
    const pid = (await client.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows[0]!.pid;
    const running = client.query(`SELECT pg_sleep(60)`).catch(() => undefined);
    // Wait until the statement runs, then drop the socket as a killed process would.
    for (let k = 0; k < 100; k++) {
      const r = await watcher.query(`SELECT state FROM pg_stat_activity WHERE pid = $1`, [pid]);
      if (r.rows[0]?.state === 'active') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    client.release(true);
    await running;
    let gone = false;
    for (let k = 0; k < 40 && !gone; k++) {
      await new Promise((r) => setTimeout(r, 250));
      gone = !(await backendAlive(pid));
    }
    expect(gone, `backend ${pid} still running its statement 10 s after its client vanished`).toBe(true);
  });
});

describe('a database that cannot be reached', () => {
  const unreachable = async (make: () => Promise<unknown>) => {
    const err = await make().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err, 'the failure to provoke').toBeInstanceOf(Error);
    return toClientError(err!);
  };

  it('is a 503 DEPENDENCY_UNAVAILABLE with Retry-After, never a 500 "internal error"', async () => {
    // Refused: nothing listens on the port (PostgreSQL stopped).
    const port = await freePort();
    const refused = await unreachable(async () => {
      const c = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${port}/x` });
      c.on('error', () => undefined);
      await c.connect();
    });
    expect(refused).toMatchObject({ status: 503, code: 'DEPENDENCY_UNAVAILABLE', retryAfterSeconds: 5 });
    expect(refused.message).toMatch(/\/readyz/);
    // Through the pool's client (as every request's statements go), the refusal names PostgreSQL: an
    // operator reading "PostgreSQL or Redis" had to ask /readyz which one (a trial).
    const dead = createDb(`postgres://postgres@127.0.0.1:${port}/x`, 1);
    const viaPool = await unreachable(() => dead.pool.query('SELECT 1'));
    await closeDb(dead);
    expect(viaPool).toMatchObject({ status: 503, code: 'DEPENDENCY_UNAVAILABLE', details: { dependency: 'postgres' } });
    expect(viaPool.message).toMatch(/^PostgreSQL could not be reached/);

    // Cut off mid-statement: PostgreSQL shut down (here: its backend terminated, 57P01).
    const victim = new pg.Client({ connectionString: url });
    victim.on('error', () => undefined);
    await victim.connect();
    const pid = (await victim.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid`)).rows[0]!.pid;
    const cut = await unreachable(async () => {
      // Its failure is taken at once: it may arrive while the terminate is still being answered,
      // and a rejection with no handler yet is an unhandled one (it failed a fresh-clone CI run).
      const q = victim.query(`SELECT pg_sleep(30)`).then(
        () => undefined,
        (err: unknown) => err as Error,
      );
      await new Promise((r) => setTimeout(r, 200));
      await watcher.query(`SELECT pg_terminate_backend($1)`, [pid]);
      const err = await q;
      if (err) throw err;
    });
    expect(cut).toMatchObject({ status: 503, code: 'DEPENDENCY_UNAVAILABLE', details: { dependency: 'postgres' } });
    // A query on the client whose connection is gone.
    const after = await unreachable(() => victim.query('SELECT 1'));
    expect(after).toMatchObject({ status: 503, code: 'DEPENDENCY_UNAVAILABLE', details: { dependency: 'postgres' } });
    await victim.end().catch(() => undefined);
  });

  it('names PostgreSQL when a COPY (an import, an upload) is cut off by a reset connection', async () => {
    // A TCP relay in front of PostgreSQL that resets every connection on demand (RST, not FIN: the
    // client sees ECONNRESET, which says nothing of what it was connected to).
    const target = new URL(url);
    const relayed: Socket[] = [];
    const relay = createServer((inbound) => {
      const outbound = connect(Number(target.port), target.hostname);
      relayed.push(inbound, outbound);
      inbound.pipe(outbound).pipe(inbound);
      inbound.on('error', () => undefined);
      outbound.on('error', () => undefined);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    const via = new URL(url);
    via.host = `127.0.0.1:${(relay.address() as { port: number }).port}`;
    const cutDb = createDb(via.href, 1);
    try {
      const err = await (async () => {
        const client = await cutDb.pool.connect();
        try {
          await client.query('CREATE TEMP TABLE cut_copy (id text)');
          const copy = client.query(copyFrom('COPY cut_copy (id) FROM STDIN'));
          copy.write('app_1\n');
          await new Promise((r) => setTimeout(r, 100));
          for (const s of relayed) s.resetAndDestroy();
          copy.end('app_2\n');
          await finished(copy);
          return undefined;
        } catch (e) {
          return e as Error;
        } finally {
          client.release(true);
        }
      })();
      expect(err, 'the cut to fail the COPY').toBeInstanceOf(Error);
      expect(toClientError(err!)).toMatchObject({
        status: 503,
        code: 'DEPENDENCY_UNAVAILABLE',
        details: { dependency: 'postgres' },
      });
    } finally {
      await closeDb(cutDb);
      await new Promise((r) => relay.close(r));
    }
  });

  it("is a 503 too when it is the API's Redis: gone, or silent (an SSE stream took its slot there and answered 500)", async () => {
    // Gone: nothing listens; the API's client gives up after its retries (MaxRetriesPerRequestError).
    const port = await freePort();
    const gone = new Redis(`redis://127.0.0.1:${port}`, {
      maxRetriesPerRequest: 3,
      lazyConnect: true,
      commandTimeout: 5_000,
      retryStrategy: () => 10,
    });
    gone.on('error', () => undefined);
    const goneAnswer = await unreachable(() => gone.ping());
    expect(goneAnswer).toMatchObject({ status: 503, code: 'DEPENDENCY_UNAVAILABLE', details: { dependency: 'redis' } });
    expect(goneAnswer.message).toMatch(/^Redis could not be reached/);
    gone.disconnect();
    // Silent: the connection is open and nothing answers (a frozen Redis): "Command timed out".
    const sockets: Socket[] = [];
    const silent = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const mute = new Redis(`redis://127.0.0.1:${(silent.address() as { port: number }).port}`, {
      maxRetriesPerRequest: 3,
      commandTimeout: 300,
      enableReadyCheck: false,
    });
    mute.on('error', () => undefined);
    expect(await unreachable(() => mute.ping())).toMatchObject({
      status: 503,
      code: 'DEPENDENCY_UNAVAILABLE',
      details: { dependency: 'redis' },
    });
    mute.disconnect();
    for (const s of sockets) s.destroy();
    await new Promise((r) => silent.close(r));
  });

  it('says to read before resending only what may have written: a command, or a write elsewhere', async () => {
    const port = await freePort();
    const dead = createDb(`postgres://postgres@127.0.0.1:${port}/x`, 1);
    const err = await dead.pool.query('SELECT 1').then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    await closeDb(dead);
    const answer = (method: string, url: string) =>
      toClientError(err!, { method, url } as unknown as FastifyRequest).message;
    expect(answer('GET', '/v1/operations/op_1')).toBe('PostgreSQL could not be reached; retry later.');
    expect(answer('HEAD', '/v1/registry/resources')).toBe('PostgreSQL could not be reached; retry later.');
    expect(answer('POST', '/v1/operations/op_1/pause')).toMatch(/read the operation before sending it again$/);
    expect(answer('POST', '/v1/registry/resources')).toMatch(/read what it was to change before sending it again$/);
  });

  it('leaves a real bug a 500', () => {
    expect(toClientError(new TypeError("Cannot read properties of undefined (reading 'x')"))).toMatchObject({
      status: 500,
      code: 'INTERNAL',
    });
  });
});

describe('a DATABASE_URL that does not lead to a database, at start-up', () => {
  const failure = async (connectionString: string) => {
    const c = new pg.Client({ connectionString });
    c.on('error', () => undefined);
    return c.connect().then(
      async () => {
        await c.end();
        throw new Error('connected');
      },
      (e: unknown) => e,
    );
  };

  it('says which variable and what is wrong, without the password, instead of a stack trace', async () => {
    const port = await freePort();
    const refusedUrl = `postgres://blastgate:s3cret@127.0.0.1:${port}/blastgate`;
    const refused = databaseProblem(await failure(refusedUrl), refusedUrl);
    expect(refused).toBeInstanceOf(ConfigError);
    expect(refused!.message).toMatch(
      new RegExp(`DATABASE_URL \\(postgres://blastgate@127\\.0\\.0\\.1:${port}/blastgate\\) cannot be reached`),
    );
    expect(refused!.message).not.toContain('s3cret');

    // A host name that does not resolve (ENOTFOUND).
    const nowhere = 'postgres://u:pw@nohost.invalid:5432/x';
    expect(databaseProblem(await failure(nowhere), nowhere)!.message).toMatch(
      /^Invalid configuration:\n {2}- DATABASE_URL \(postgres:\/\/u@nohost\.invalid:5432\/x\) cannot be reached/,
    );

    const missing = new URL(url);
    missing.pathname = '/no_such_db';
    const absent = databaseProblem(await failure(missing.href), missing.href);
    expect(absent!.message).toMatch(/DATABASE_URL names the database "no_such_db", which does not exist/);

    // Anything else is not about the URL: left as it is.
    expect(databaseProblem(new Error('boom'), url)).toBeUndefined();
  });
});
