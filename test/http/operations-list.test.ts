// GET /v1/operations: summaries with progress (never plans), filters that take several values and
// refuse unknown ones, keyset paging with a next link.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';

let t: TestApp;
const spec = { targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-1' };
/** Operations created here, oldest first; their states are set below. */
const ops: { id: string; state: string }[] = [];
let bigId: string;

beforeAll(async () => {
  t = await buildTestApp();
  // 600 tenants with 20 apps each: a 12,000-item plan over 600 tenants.
  await seedRegistry(t.databaseUrl, { sites: 600, appsPerSite: 20, internalTenants: 1 });
  const submit = (ids: string[]) =>
    request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ ...spec, ids });
  const big = await submit(
    Array.from({ length: 600 }, (_, s) => Array.from({ length: 20 }, (_, j) => appId(s, j))).flat(),
  );
  expect(big.status, JSON.stringify(big.body).slice(0, 300)).toBe(201);
  bigId = big.body.id;
  ops.push({ id: bigId, state: 'planned' });
  // Five more of one app each: apps of their own, since the big plan holds every seeded app.
  await query(
    t.databaseUrl,
    `INSERT INTO resources (id, type, tenant_id) SELECT 'app_9' || lpad(i::text, 4, '0') || '_00', 'app', 'tenant_00001'
     FROM generate_series(0, 4) i`,
  );
  const states = ['running', 'paused', 'halted', 'completed', 'approved'];
  for (let i = 0; i < states.length; i++) {
    const r = await submit([`app_9${String(i).padStart(4, '0')}_00`]);
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    // The lifecycle is tested elsewhere: here only the state a list filters on.
    await query(t.databaseUrl, 'UPDATE operations SET state = $2 WHERE id = $1', [r.body.id, states[i]]);
    ops.push({ id: r.body.id, state: states[i]! });
  }
});
afterAll(async () => {
  await t?.close();
});

const list = (q: string) => request(t.app.server).get(`/v1/operations${q}`).set('authorization', t.auth('viewer'));
const ids = (body: { items: { id: string }[] }) => body.items.map((o) => o.id);
const newestFirst = (xs: { id: string }[]) => xs.map((o) => o.id).reverse();

describe('filters', () => {
  it('an unknown state is a 400 naming the parameter and every allowed value', async () => {
    const r = await list('?state=bogus').expect(400);
    expect(r.body.code).toBe('VALIDATION_FAILED');
    expect(r.body.details[0].field).toBe('querystring.state');
    expect(r.body.details[0].allowed).toEqual(expect.arrayContaining(['planned', 'running', 'paused', 'completed']));
    expect(r.body.message).toMatch(/^Invalid querystring.state: "bogus" is not allowed; must be one of "planned", /);
    // Also when it comes with a good one, in either form.
    await list('?state=running&state=bogus').expect(400);
    await list('?state=running,bogus').expect(400);
    await list('?state=').expect(400);
    // A typo names what it surely meant; a trailing comma is not a value of its own.
    const typo = await list('?state=runing').expect(400);
    expect(typo.body.message).toMatch(
      /^Invalid querystring.state: "runing" is not allowed \(did you mean "running"\?\); must be one of /,
    );
    expect(typo.body.details[0].didYouMean).toBe('running');
    expect((await list('?state=paused,').expect(200)).body.items.map((o: { state: string }) => o.state)).toEqual([
      'paused',
    ]);
    expect((await list('?state=,paused&state=running,,').expect(200)).body.items.length).toBe(2);
    const kind = await list('?kind=drop').expect(400);
    expect(kind.body.details[0].allowed).toEqual(['delete', 'erase', 'restore', 'purge']);
  });

  it('takes several states, repeated or comma-separated, and returns exactly those', async () => {
    const want = newestFirst(ops.filter((o) => ['running', 'paused'].includes(o.state)));
    expect(want).toHaveLength(2);
    expect(ids((await list('?state=running&state=paused').expect(200)).body)).toEqual(want);
    expect(ids((await list('?state=running,paused').expect(200)).body)).toEqual(want);
    expect(ids((await list('?state=paused').expect(200)).body)).toEqual(
      newestFirst(ops.filter((o) => o.state === 'paused')),
    );
    expect(ids((await list('?kind=restore').expect(200)).body)).toEqual([]);
    expect(ids((await list('?kind=delete&state=planned').expect(200)).body)).toEqual([bigId]);
  });
});

describe('paging', () => {
  it('walks every operation once, newest first, following links.next with the filters kept', async () => {
    const seen: string[] = [];
    let next: string | null = '/v1/operations?state=planned,running,paused,halted,completed,approved&limit=4';
    for (let i = 0; next && i < 10; i++) {
      const r: request.Response = await request(t.app.server)
        .get(next)
        .set('authorization', t.auth('viewer'))
        .expect(200);
      seen.push(...ids(r.body));
      expect(r.body.items.length).toBeLessThanOrEqual(4);
      next = r.body.links.next;
      if (next) {
        expect(next).toContain('limit=4');
        expect(next).toContain(`cursor=${r.body.nextCursor}`);
      }
    }
    expect(seen).toEqual(newestFirst(ops));
    await list('?limit=201').expect(400);
  });

  it('gives no next page after a page that is exactly the last one', async () => {
    const all = await list(`?limit=${ops.length}`).expect(200);
    expect(ids(all.body)).toEqual(newestFirst(ops));
    expect(all.body).toMatchObject({ nextCursor: null, links: { next: null } });
    const half = ops.length / 2;
    const first = await list(`?limit=${half}`).expect(200);
    expect(first.body.nextCursor).toBe(ids(first.body)[half - 1]);
    const last = await list(`?limit=${half}&cursor=${first.body.nextCursor}`).expect(200);
    expect(ids(last.body)).toHaveLength(half);
    expect(last.body).toMatchObject({ nextCursor: null, links: { next: null } });
  });
});

describe('summaries', () => {
  it('carry state and progress, never the plan or policies, and stay small for a large plan', async () => {
    const r = await list('?limit=200').expect(200);
    const big = r.body.items.find((o: { id: string }) => o.id === bigId);
    expect(big).toMatchObject({
      id: bigId,
      kind: 'delete',
      action: 'delete',
      targetType: 'app',
      state: 'planned',
      itemCount: 12000,
      tenantCount: 600,
      currentWave: null,
      haltReason: null,
      progress: { items: 12000, done: 0, failed: 0, pending: 12000 },
      links: { self: `/v1/operations/${bigId}` },
    });
    expect(big.waveCount).toBeGreaterThan(1);
    for (const o of r.body.items) {
      expect(Object.keys(o)).not.toEqual(expect.arrayContaining(['plan']));
      expect(o).not.toHaveProperty('rollout');
      expect(o).not.toHaveProperty('haltPolicy');
      expect(o).not.toHaveProperty('rejection');
    }
    const full = await request(t.app.server)
      .get(`/v1/operations/${bigId}`)
      .set('authorization', t.auth('viewer'))
      .expect(200);
    expect(big.waveCount).toBe(full.body.plan.waves.length);
    const planBytes = Buffer.byteLength(JSON.stringify(full.body.plan));
    const summaryBytes = Buffer.byteLength(JSON.stringify(big));
    expect(summaryBytes * 4).toBeLessThan(planBytes);
    // The page against the same operations in full (what the list used to return, and more).
    let fullBytes = 0;
    for (const o of r.body.items) {
      const one = await request(t.app.server)
        .get(`/v1/operations/${o.id}`)
        .set('authorization', t.auth('viewer'))
        .expect(200);
      fullBytes += Buffer.byteLength(one.text);
      // The single view carries the list's progress too, under the same name.
      expect(one.body.progress, o.id).toEqual(o.progress);
    }
    // Measured: 3,516 B for the page of six against 17,965 B in full; the 12,000-item plan 3,302 B, its summary 588 B.
    expect(Buffer.byteLength(r.text) * 3).toBeLessThan(fullBytes);
  });

  // A rejected plan read "0 items" in the live view's list (a trial): itemCount counts the plan, and
  // there is none. The summary says what was submitted and which classes rejected it.
  it('say what a rejected plan was submitted with and why it was rejected', async () => {
    // Two site IDs in an app delete, and an app the big plan holds.
    const res = await request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ ...spec, ids: [siteId(1), appId(3, 0), siteId(2)] });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    const id = res.body.details.operationId as string;
    const rejected = (await list('?state=rejected').expect(200)).body.items;
    expect(rejected.map((o: { id: string }) => o.id)).toEqual([id]);
    expect(rejected[0]).toMatchObject({
      state: 'rejected',
      itemCount: 0,
      rejectionSummary: { submitted: 3, counts: { type_mismatch: 2, in_flight: 1 } },
    });
    expect(Object.keys(rejected[0].rejectionSummary.counts).sort()).toEqual(['in_flight', 'type_mismatch']);
    // Ended as it was made: a rejected plan is final (it read as never finished).
    expect(rejected[0].finishedAt).toBe(rejected[0].createdAt);
    // The same counts as the operation's own rejection (which lists every class, ok included).
    const one = await request(t.app.server).get(`/v1/operations/${id}`).set('authorization', t.auth('viewer'));
    const all = one.body.rejection.counts as Record<string, number>;
    expect(Object.values(all).reduce((a, n) => a + n, 0)).toBe(3);
    // Any other state: null.
    for (const o of (await list('?limit=200').expect(200)).body.items)
      if (o.id !== id) expect(o.rejectionSummary, o.id).toBeNull();
  });

  // A trial read a command's answer without the `progress` the views carry (it had `counts` only).
  it("a command's answer carries the same progress as the views", async () => {
    const seen = await request(t.app.server).get(`/v1/operations/${bigId}`).set('authorization', t.auth('viewer'));
    const approved = await request(t.app.server)
      .post(`/v1/operations/${bigId}/approve`)
      .set('authorization', t.auth('approver'))
      .send({ planHash: seen.body.planHash, comment: 'looked at the blast radius' });
    expect(approved.status, JSON.stringify(approved.body).slice(0, 300)).toBe(200);
    expect(approved.body.command).toMatchObject({ action: 'approve' });
    const one = await request(t.app.server).get(`/v1/operations/${bigId}`).set('authorization', t.auth('viewer'));
    expect(approved.body.progress).toMatchObject({ items: 12000, done: 0, failed: 0, pending: 12000 });
    expect(approved.body.progress).toEqual(one.body.progress);
  });
});
