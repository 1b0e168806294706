// GET /v1/operations/{id}/events: a client that disconnects mid-operation and reconnects with
// Last-Event-ID — to another API replica — misses nothing and sees nothing twice; two replicas serve
// the same stream; the stream ends with the operation; streams per token are bounded.
import { readFileSync } from 'node:fs';
import { OPENAPI_FILE } from '../../scripts/openapi.ts';
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiChild, type ApiChild } from '../support/api-child.ts';
import {
  buildExecHarness,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appId, query, seedRegistry } from '../support/seed.ts';
import { openSse, type SseClient, type SseFrame } from '../support/sse.ts';

let h: ExecHarness;
let replicaB: ApiChild;
let urlA = '';
let urlB = '';
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1, limits: { sseMaxPerToken: 3, sseHeartbeatMs: 300 } });
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  urlA = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  replicaB = await startApiChild({
    databaseUrl: h.databaseUrl,
    redisUrl: h.redisUrl,
    queuePrefix: h.prefix,
    adminToken: h.tokens.admin,
    env: { BLASTGATE_SSE_MAX_PER_TOKEN: '3', BLASTGATE_SSE_HEARTBEAT_MS: '300' },
  });
  urlB = `http://127.0.0.1:${replicaB.port}`;
  await seedRegistry(h.databaseUrl, { sites: 12, appsPerSite: 10, internalTenants: 1 });
  await useHttpAdapter(h);
}, 120_000);
afterAll(async () => {
  await replicaB?.kill();
  await h?.close();
});

const events = (base: string, id: string) => `${base}/v1/operations/${id}/events`;
const seqsOf = (fs: SseFrame[]) => fs.filter((f) => f.event === 'transition').map((f) => f.data.seq as number);
const auditSeqs = async (id: string) =>
  (
    await query<{ seq: string }>(h.databaseUrl, 'SELECT seq FROM audit_events WHERE operation_id = $1 ORDER BY seq', [
      id,
    ])
  ).map((r) => Number(r.seq));
const ids = (sites: number[]) => sites.flatMap((s) => Array.from({ length: 10 }, (_, j) => appId(s, j)));

describe('live events', () => {
  it('resumes on another replica with Last-Event-ID without gaps or repeats, and both replicas stream the same', async () => {
    h.downstream.latency(15);
    const op = await submitAndStart(h, { ids: ids([0, 1, 2, 3, 4, 5]), rollout: { bakeSeconds: 1 } }, false);
    const fullA = await openSse(events(urlA, op.id), h.tokens.viewer);
    const fullB = await openSse(events(urlB, op.id), h.tokens.operator);
    const first = await openSse(events(urlA, op.id), h.tokens.approver);
    expect(first.status).toBe(200);
    const snap = await first.waitFor(() => true, 'the first frame');
    expect(snap.event).toBe('snapshot');
    expect((snap.data.operation as { state: string }).state).toBe('approved');

    const started = await request(h.app.server)
      .post(`/v1/operations/${op.id}/start`)
      .set('authorization', h.auth('operator'))
      .send({});
    expect(started.status).toBe(200);
    await first.waitFor((f) => f.data.action === 'operation.wave_settled', 'the first wave to settle');
    first.close();
    await first.ended;
    const lastId = first.frames.at(-1)!.id!;
    // The operation moves on while nobody listens.
    await until(async () => (await auditSeqs(op.id)).some((s) => s > Number(lastId)), 'events after the disconnect');

    const resumed = await openSse(events(urlB, op.id), h.tokens.approver, lastId);
    expect(resumed.status).toBe(200);
    const end = await resumed.waitFor((f) => f.event === 'end', 'the end frame', 90_000);
    expect(end.data.state).toBe('completed');
    await resumed.ended;
    await Promise.all([
      fullA.waitFor((f) => f.event === 'end', 'A ends'),
      fullB.waitFor((f) => f.event === 'end', 'B ends'),
    ]);

    const all = await auditSeqs(op.id);
    // Before the disconnect and after the reconnect, together: every audit event once, in order.
    expect([...seqsOf(first.frames), ...seqsOf(resumed.frames)]).toEqual(all);
    expect(seqsOf(first.frames).length).toBeGreaterThan(0);
    expect(seqsOf(resumed.frames)[0]).toBeGreaterThan(Number(lastId));
    // Two replicas, the same stream.
    expect(seqsOf(fullA.frames)).toEqual(all);
    expect(seqsOf(fullB.frames)).toEqual(all);

    const actions = fullA.frames.filter((f) => f.event === 'transition').map((f) => f.data.action);
    for (const a of ['operation.approved', 'operation.started', 'operation.wave_settled', 'operation.completed'])
      expect(actions, a).toContain(a);
    // Every frame's id is a cursor that resumes: never behind the frames before it.
    const frameIds = fullA.frames.map((f) => Number(f.id));
    expect(frameIds).toEqual([...frameIds].sort((a, b) => a - b));
    const progress = fullA.frames.filter((f) => f.event === 'progress').map((f) => f.data.counts as { done: number });
    expect(progress.length).toBeGreaterThan(1);
    expect(progress.at(-1)!.done).toBe(60);
    // Each wave carries the fields README documents and nothing that is always null (an
    // `inFlight: null` that nothing ever counted was one).
    const lastWaves = fullA.frames.filter((f) => f.event === 'progress').at(-1)!.data.waves as object[];
    for (const w of lastWaves)
      expect(Object.keys(w).sort()).toEqual(
        [
          'descendants',
          'done',
          'failed',
          'items',
          'pending',
          'restoreFailed',
          'restoring',
          'restored',
          'settledAt',
          'startedAt',
          'wave',
        ].sort(),
      );
    const probes = fullA.frames.find((f) => f.event === 'probes');
    expect(probes?.data.results).toEqual(expect.arrayContaining([expect.objectContaining({ result: 'healthy' })]));
    expect(fullA.frames.at(-1)!.event).toBe('end');
  }, 150_000);

  it('shows the halt and its reason, the rollback, and ends rolled back', async () => {
    h.downstream.latency(0);
    const op = await submitAndStart(h, { ids: ids([6, 7, 8]), rollout: { bakeSeconds: 0 } }, false);
    const s = await openSse(events(urlA, op.id), h.tokens.viewer);
    h.downstream.failOnly(['softDelete']);
    h.downstream.failAll(500);
    try {
      await request(h.app.server)
        .post(`/v1/operations/${op.id}/start`)
        .set('authorization', h.auth('operator'))
        .send({});
      const end = await s.waitFor((f) => f.event === 'end', 'the end', 90_000);
      expect(end.data.state).toBe('rolled_back');
    } finally {
      h.downstream.failAll(null);
      h.downstream.failOnly(null);
    }
    const halted = s.frames.find((f) => f.data.action === 'operation.halted');
    // onHalt rollback (the default): the halt goes straight to rolling back, saying why.
    expect(halted?.data.to).toBe('rolling_back');
    expect((halted?.data.detail as { reason: string }).reason).toMatch(/^wave 1 of \d+: /);
    const last = s.frames.filter((f) => f.event === 'progress').at(-1)!.data;
    expect(last.haltReason).toMatch(/^wave 1 of \d+: /);
    expect((last.counts as { restored: number }).restored).toBeGreaterThan(0);
    expect((last.counts as { restoreFailed: number }).restoreFailed).toBe(0);
    expect(s.frames.some((f) => f.data.action === 'operation.rolled_back')).toBe(true);
  }, 120_000);

  it('counts per wave the items a rollback could not restore (restoreFailed), as the ledger has them', async () => {
    h.downstream.latency(0);
    const op = await submitAndStart(h, { ids: ids([10, 11]), rollout: { bakeSeconds: 0 } });
    await waitForState(h, op.id, ['completed'], 90_000);
    // 20 items deleted; the rollback restores 15, and 5 restores are refused for good (422).
    h.downstream.failOnly(['restore']);
    h.downstream.failNext(5, 422);
    try {
      const rb = await request(h.app.server)
        .post(`/v1/operations/${op.id}/rollback`)
        .set('authorization', h.auth('operator'))
        .send({ reason: 'undo it' });
      expect(rb.status).toBe(200);
      // Followed from the start of the rollback to its end.
      const s = await openSse(events(urlA, op.id), h.tokens.viewer);
      const end = await s.waitFor((f) => f.event === 'end', 'the end', 90_000);
      expect(end.data.state).toBe('rollback_incomplete');
      type Wave = { wave: number; done: number; restored: number; restoreFailed: number };
      const last = s.frames.filter((f) => f.event === 'snapshot' || f.event === 'progress').at(-1)!.data;
      const byLedger = await query<{ wave: number; restored: number; restore_failed: number }>(
        h.databaseUrl,
        `SELECT wave, count(*) FILTER (WHERE state = 'restored')::int AS restored,
                count(*) FILTER (WHERE state = 'restore_failed')::int AS restore_failed
         FROM operation_items WHERE operation_id = $1 GROUP BY wave ORDER BY wave`,
        [op.id],
      );
      const waves = (last.waves as Wave[]).filter((w) => w.done > 0);
      expect(waves.map((w) => [w.wave, w.restored, w.restoreFailed])).toEqual(
        byLedger.map((r) => [r.wave, r.restored, r.restore_failed]),
      );
      expect(last.counts).toMatchObject({ done: 20, restored: 15, restoreFailed: 5 });
      // The single view and the list say it under the same name, with the same numbers.
      const progress = { items: 20, done: 20, failed: 0, pending: 0, restoring: 0, restored: 15, restoreFailed: 5 };
      const one = await request(h.app.server).get(`/v1/operations/${op.id}`).set('authorization', h.auth('viewer'));
      expect(one.body.progress).toEqual(progress);
      const page = await request(h.app.server)
        .get('/v1/operations?state=rollback_incomplete')
        .set('authorization', h.auth('viewer'));
      expect(page.body.items.find((o: { id: string }) => o.id === op.id)?.progress).toEqual(progress);
    } finally {
      h.downstream.failOnly(null);
      h.downstream.failNext(0, 422);
    }
  }, 120_000);

  it('bounds open streams per token across replicas, sends heartbeats, and refuses bad requests with a code', async () => {
    const op = await submitAndStart(h, { ids: ids([9]) }, false);
    const open: SseClient[] = [
      await openSse(events(urlA, op.id), h.tokens.requester),
      await openSse(events(urlB, op.id), h.tokens.requester),
      await openSse(events(urlA, op.id), h.tokens.requester),
    ];
    expect(open.map((c) => c.status)).toEqual([200, 200, 200]);
    const refused = await openSse(events(urlB, op.id), h.tokens.requester);
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ code: 'TOO_MANY_STREAMS', details: { max: 3 } });
    // Another token is not counted against this one.
    const other = await openSse(events(urlB, op.id), h.tokens.viewer);
    expect(other.status).toBe(200);
    // An idle stream (a planned operation) still hears from the server.
    await until(() => open[0]!.comments.includes('ping'), 'a heartbeat', 10_000);
    open[0]!.close();
    await open[0]!.ended;
    let again: SseClient | undefined;
    await until(async () => {
      again?.close();
      again = await openSse(events(urlB, op.id), h.tokens.requester);
      return again.status === 200;
    }, 'a slot freed by the closed stream');
    for (const c of [...open, other, again!]) c.close();

    const unknown = await openSse(events(urlA, 'op_doesnotexist0000'), h.tokens.viewer);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toMatchObject({ code: 'NOT_FOUND' });
    const bad = await openSse(events(urlA, op.id), h.tokens.viewer, 'abc');
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({ code: 'INVALID_LAST_EVENT_ID' });
    // An id no stream sent yet (after the newest event): taken as a cursor, it withheld every
    // transition up to it. Refused, on either replica, as the header and as ?after=.
    const newest = Number(
      (await query<{ seq: string }>(h.databaseUrl, 'SELECT max(seq) AS seq FROM audit_events'))[0]!.seq,
    );
    for (const [base, cursor] of [
      [urlA, String(newest + 1000)],
      [urlB, '999999999'],
    ] as const) {
      const future = await openSse(events(base, op.id), h.tokens.viewer, cursor);
      expect(future.status).toBe(400);
      expect(future.body).toMatchObject({
        code: 'INVALID_LAST_EVENT_ID',
        message: expect.stringContaining('after the newest event'),
        details: { lastEventId: cursor },
      });
    }
    const viaQuery = await fetch(`${events(urlA, op.id)}?after=${newest + 1000}`, {
      headers: { authorization: `Bearer ${h.tokens.viewer}` },
    });
    expect(viaQuery.status).toBe(400);
    await viaQuery.body?.cancel();
    // The document's example of ?after= works on any install: Swagger UI fills it in, and "412"
    // was after the newest event of a fresh one, a 400 (a trial).
    const doc = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as {
      paths: Record<string, { get: { parameters: { name: string; example?: string }[] } }>;
    };
    const example = doc.paths['/v1/operations/{id}/events']!.get.parameters.find((p) => p.name === 'after')!.example!;
    const documented = await openSse(`${events(urlA, op.id)}?after=${example}`, h.tokens.viewer);
    expect(documented.status).toBe(200);
    documented.close();
    // A misspelt parameter replayed the whole stream from its start: refused, naming it.
    const misspelt = await fetch(`${events(urlA, op.id)}?afterr=${newest}`, {
      headers: { authorization: `Bearer ${h.tokens.viewer}` },
    });
    expect(misspelt.status).toBe(400);
    const refusal = (await misspelt.json()) as { code: string; message: string };
    expect(refusal).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(refusal.message).toContain('afterr');
    const anonymous = await fetch(events(urlA, op.id));
    expect(anonymous.status).toBe(401);
    await anonymous.body?.cancel();
    await waitForState(h, op.id, ['approved']);
  }, 60_000);
});
