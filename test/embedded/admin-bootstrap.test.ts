// The bootstrap admin token at start-up, with the real server entry (src/server.ts) as a child:
// outside embedded mode it is taken from BLASTGATE_ADMIN_TOKEN only while no admin token exists,
// never printed, and a start with neither is refused; embedded mode keeps and prints its own, and
// a revoked one is not brought back by a restart.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createTestDatabase } from '../support/db.ts';
import { TEST_SNAPSHOT_KEY } from '../support/keys.ts';
import { ADMIN_TOKEN, cleanUp, spawnServer, startServer, tempDataDir, type ServerChild } from './helpers.ts';

let dir: string | undefined;
let server: ServerChild | undefined;
afterEach(async () => {
  if (dir) await cleanUp(dir, server);
  dir = undefined;
  server = undefined;
});

/** Outside embedded mode: the suite's Redis, a database of this test's own, no workers. */
async function external(env: Record<string, string> = {}) {
  dir = tempDataDir();
  const databaseUrl = await createTestDatabase();
  return {
    databaseUrl,
    env: {
      DATABASE_URL: databaseUrl,
      REDIS_URL: inject('redisUrl'),
      BLASTGATE_WORKERS_IN_PROCESS: 'false',
      BLASTGATE_QUEUE_PREFIX: `bgt_${databaseUrl.split('/').pop()}`,
      BLASTGATE_SNAPSHOT_KEY: TEST_SNAPSHOT_KEY,
      ...env,
    },
  };
}

// A server just started on a loaded machine may shed a request (503 OVERLOADED, Retry-After): that
// is load shedding doing its job, not what this file tests, so such a request is sent again.
async function call(url: string, path: string, token: string, init: RequestInit = {}): Promise<Response> {
  for (let attempt = 1; ; attempt++) {
    const res = await fetch(`${url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${token}`, ...(init.body ? { 'content-type': 'application/json' } : {}) },
      signal: AbortSignal.timeout(15_000),
    });
    if (res.status !== 503 || attempt === 10) return res;
    const body = (await res
      .clone()
      .json()
      .catch(() => ({}))) as { code?: string };
    if (body.code !== 'OVERLOADED') return res;
    await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after') ?? 1) * 1000));
  }
}

async function stop(s: ServerChild) {
  s.signal('SIGTERM');
  await s.exited;
}

describe('bootstrap admin token at start-up', () => {
  it('outside embedded mode, refuses to start with no admin token and no BLASTGATE_ADMIN_TOKEN (exit 2, saying what to set)', async () => {
    const { env } = await external({ BLASTGATE_ADMIN_TOKEN: '' });
    server = await spawnServer(dir!, env);
    expect(await server.exited).toBe(2);
    const out = server.output();
    expect(out).toContain(
      'Blastgate cannot start: no active admin token exists and no bootstrap secret was given. ' +
        'Set BLASTGATE_ADMIN_TOKEN to a new secret (at least 24 characters)',
    );
    expect(out).not.toMatch(/listening on|bg_[A-Za-z0-9_-]{20,}/);
  });

  it('outside embedded mode, bootstraps from BLASTGATE_ADMIN_TOKEN without printing it; once revoked, a restart does not bring it back', async () => {
    const { env } = await external();
    server = await startServer(dir!, env);
    expect(server.output()).toContain('Admin token: bootstrapped from BLASTGATE_ADMIN_TOKEN (not printed)');
    expect(server.output()).not.toContain(ADMIN_TOKEN);
    const other = await call(server.url, '/v1/admin/tokens', ADMIN_TOKEN, {
      method: 'POST',
      body: JSON.stringify({ name: 'alice-admin', role: 'admin' }),
    });
    expect(other.status).toBe(201);
    const alice = ((await other.json()) as { token: string }).token;
    const list = (await (await call(server.url, '/v1/admin/tokens', alice)).json()) as {
      items: { id: string; name: string }[];
    };
    const bootstrap = list.items.find((x) => x.name === 'bootstrap-admin')!;
    expect((await call(server.url, `/v1/admin/tokens/${bootstrap.id}`, alice, { method: 'DELETE' })).status).toBe(200);
    await stop(server);

    server = await startServer(dir!, env);
    expect(server.output()).toMatch(
      /BLASTGATE_ADMIN_TOKEN is not used: it belongs to token "bootstrap-admin", revoked at \S+ \(revoked tokens are never brought back\)/,
    );
    const refused = await call(server.url, '/v1/audit', ADMIN_TOKEN);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { code: string }).code).toBe('TOKEN_REVOKED');
    expect((await call(server.url, '/v1/audit', alice)).status).toBe(200);
  });

  it('embedded mode generates, keeps and prints its admin token; a revoked one is not brought back', async () => {
    dir = tempDataDir();
    server = await startServer(dir, { BLASTGATE_ADMIN_TOKEN: '' });
    const kept = /Admin token: (bg_\S+) {3}\(kept in /.exec(server.output())?.[1];
    expect(kept).toBeDefined();
    const other = await call(server.url, '/v1/admin/tokens', kept!, {
      method: 'POST',
      body: JSON.stringify({ name: 'alice-admin', role: 'admin' }),
    });
    const alice = ((await other.json()) as { token: string }).token;
    const list = (await (await call(server.url, '/v1/admin/tokens', alice)).json()) as {
      items: { id: string; name: string }[];
    };
    const bootstrap = list.items.find((x) => x.name === 'bootstrap-admin')!;
    expect((await call(server.url, `/v1/admin/tokens/${bootstrap.id}`, alice, { method: 'DELETE' })).status).toBe(200);
    await stop(server);

    server = await startServer(dir, { BLASTGATE_ADMIN_TOKEN: '' });
    expect(server.output()).toMatch(
      /Admin token: the one kept in \S+admin-token is not used: it belongs to token "bootstrap-admin", revoked at/,
    );
    expect(server.output()).not.toContain(kept!);
    expect((await call(server.url, '/v1/audit', kept!)).status).toBe(401);
  });
});
