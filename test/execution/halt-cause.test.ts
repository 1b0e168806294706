// The cause of a halt, after what was done about it, on the real stack (API, workers, a real
// downstream over HTTP, a real webhook receiver, the CLI as a child process). A new-user trial: an
// operation halted itself, its rollback could not restore everything, the operator fixed the
// downstream and rolled back again. The API's haltReason, `blastgate status`, the live view
// ("Rolled back: rollback by sre-operator: …") and the operation.rolled_back webhook then said
// only what the operator typed; why it had halted was left in the audit timeline alone.
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOf, command } from '../support/exec-helpers.ts';
import { runCli } from '../support/cli.ts';
import { query, seedRegistry } from '../support/seed.ts';
import { startReceiver, type Receiver } from '../support/webhook-receiver.ts';

const WEBHOOKS = { attempts: 3, backoffMs: 50, timeoutMs: 1_000, pollMs: 100, concurrency: 4 };
let h: ExecHarness;
let hooks: Receiver;
let url: string;

beforeAll(async () => {
  h = await buildExecHarness({ workers: 1, webhooks: WEBHOOKS });
  await seedRegistry(h.databaseUrl, { sites: 4, appsPerSite: 3 });
  await useHttpAdapter(h, false);
  await h.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  hooks = await startReceiver('ok');
  await request(h.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', h.auth('admin'))
    .send({ url: hooks.url, events: ['operation.rollback_incomplete', 'operation.rolled_back'] })
    .expect(201);
});
afterAll(async () => {
  await h?.close();
  await hooks?.close();
});

const hook = (type: string) => hooks.events().find((e) => e.type === type);

describe('an operator rolls back an operation that halted itself', () => {
  it('every surface says what the operator did and why it had halted', async () => {
    let restoresRefused = true;
    h.downstream.answer((c) => {
      if (c.action === 'softDelete') return 500;
      return c.action === 'restore' && restoresRefused ? 422 : null;
    });
    const op = await submitAndStart(h, {
      ids: appsOf([1, 2, 3], 3),
      rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'], restoreDrill: false },
      haltPolicy: { probe: 'optional', maxConsecutiveFailures: 2 },
    });
    const incomplete = await waitForState(h, op.id, ['rollback_incomplete', 'rolled_back', 'completed']);
    expect(incomplete.state).toBe('rollback_incomplete');
    const [halt] = await query<{ reason: string }>(
      h.databaseUrl,
      `SELECT payload->>'reason' AS reason FROM audit_events WHERE operation_id = $1 AND action = 'operation.halted'`,
      [op.id],
    );
    const cause = halt!.reason;
    expect(cause).toMatch(/^wave 1 of 1: 2 consecutive item failures \(limit 2\); last error: HTTP 500/);
    expect(incomplete.haltReason).toMatch(/^\d+ item\(s\) could not be restored; see the item ledger \(halted: /);
    expect(incomplete.haltReason).toContain(`(halted: ${cause})`);

    restoresRefused = false;
    await command(h, 'operator', op.id, 'rollback', { reason: 'downstream fixed, retry rollback' }).expect(200);
    const done = await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete']);
    const said = `rollback by test-operator: downstream fixed, retry rollback (halted: ${cause})`;
    expect([done.state, done.haltReason]).toEqual(['rolled_back', said]);

    // The list, the event stream (what the live view and `watch` read), the CLI and the webhooks.
    const list = await request(h.app.server)
      .get('/v1/operations?state=rolled_back')
      .set('authorization', h.auth('viewer'))
      .expect(200);
    expect(list.body.items.find((o: { id: string }) => o.id === op.id).haltReason).toBe(said);
    const stream = await request(h.app.server)
      .get(`/v1/operations/${op.id}/events`)
      .set('authorization', h.auth('viewer'))
      .buffer(true)
      .parse((res, cb) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => cb(null, text));
      });
    const frames = String(stream.body)
      .split('\n\n')
      .filter((f) => f.includes('data: '))
      .map((f) => ({ event: /event: (\w+)/.exec(f)![1], data: JSON.parse(f.slice(f.indexOf('data: ') + 6)) }));
    expect(frames.find((f) => f.event === 'snapshot')!.data.operation.haltReason).toBe(said);
    const started = frames.filter((f) => f.event === 'transition' && f.data.action === 'operation.rollback_started');
    expect(started.at(-1)!.data.haltReason).toBe(said);
    const status = await runCli(['status', op.id], { url, token: h.tokens.viewer });
    // Its own words on a line of their own (a rollback is not labelled "halt reason": output.ts haltReasonText).
    expect(status.stdout).toContain(`\n  ${said}\n`);
    expect(status.stdout).not.toContain('halt reason:');
    await until(() => hook('operation.rolled_back') !== undefined, 'the rolled_back webhook', 20_000);
    expect(hook('operation.rolled_back')!.data.haltReason).toBe(said);
    expect(hook('operation.rollback_incomplete')!.data.haltReason).toBe(incomplete.haltReason);
  });
});
