// blastgate webhooks list | deliveries | redeliver against the real API (no workers: what a
// redelivery records is read from the delivery log). A refusal prints the server's code, and a
// refused field names the flag that gave it.
import type { AddressInfo } from 'node:net';
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { runCli } from '../support/cli.ts';
import { query } from '../support/seed.ts';

let t: TestApp;
let url: string;
let endpoint: string;
beforeAll(async () => {
  t = await buildTestApp();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  const created = await request(t.app.server)
    .post('/v1/admin/webhooks')
    .set('authorization', t.auth('admin'))
    .send({ url: 'http://127.0.0.1:9/hook', events: ['*'] });
  expect(created.status).toBe(201);
  endpoint = created.body.id;
  // Three deliveries that ran out of attempts while the receiver was down, one delivered.
  await query(
    t.databaseUrl,
    `INSERT INTO webhook_deliveries (endpoint_id, audit_seq, event_id, event_type, payload, status, attempts, last_error, failed_at)
     SELECT $1, n, 'evt_' || n, 'operation.completed', '{}'::jsonb, CASE WHEN n = 4 THEN 'delivered' ELSE 'failed' END,
            CASE WHEN n = 4 THEN 1 ELSE 16 END, CASE WHEN n = 4 THEN NULL ELSE 'connect ECONNREFUSED 127.0.0.1:9' END,
            CASE WHEN n = 4 THEN NULL ELSE now() END
     FROM generate_series(1, 4) n`,
    [endpoint],
  );
});
afterAll(async () => {
  await t?.close();
});

const admin = (args: string[]) => runCli(args, { url, token: t.tokens.admin });

it('lists endpoints and failed deliveries, then sends chosen ones and the rest again', async () => {
  const list = await admin(['webhooks', 'list']);
  expect(list.code, list.stderr).toBe(0);
  expect(list.stdout).toContain(`${endpoint}  enabled   http://127.0.0.1:9/hook`);
  expect(list.stdout).toContain(`  3 failed (the last at `);
  expect(list.stdout).toContain(`): blastgate webhooks redeliver ${endpoint} --reason "…"`);

  const failed = await admin(['--json', 'webhooks', 'deliveries', endpoint, '--status', 'failed']);
  expect(failed.code, failed.stderr).toBe(0);
  const ids = (JSON.parse(failed.stdout).items as { id: string }[]).map((d) => d.id);
  expect(ids).toHaveLength(3);
  const human = await admin(['webhooks', 'deliveries', endpoint, '--status', 'failed']);
  expect(human.stdout).toContain('failed    16 attempts  operation.completed  last: connect ECONNREFUSED');

  const one = await admin(['webhooks', 'redeliver', endpoint, '--reason', 'receiver back', '--delivery', ids[0]!]);
  expect(one.code, one.stderr).toBe(0);
  expect(one.stdout).toContain(`1 delivery is pending again (${ids[0]}): a worker sends it within seconds.`);
  const rest = await admin(['--json', 'webhooks', 'redeliver', endpoint, '--reason', 'receiver back']);
  expect(rest.code, rest.stderr).toBe(0);
  expect(JSON.parse(rest.stdout)).toEqual({ redelivered: 2, deliveryIds: ids.slice(1), more: false });
  const none = await admin(['webhooks', 'redeliver', endpoint, '--reason', 'receiver back']);
  expect(none.stdout).toContain('No failed delivery to send again.');
  const noneListed = await admin(['webhooks', 'deliveries', endpoint, '--status', 'failed']);
  expect(noneListed.code).toBe(0);
  expect(noneListed.stdout.trim()).toBe('No failed deliveries.');

  const pending = await admin(['--json', 'webhooks', 'deliveries', endpoint, '--status', 'pending']);
  expect((JSON.parse(pending.stdout).items as unknown[]).length).toBe(3);
});

it('prints the server refusal with its code, naming the flag or the delivery at fault', async () => {
  const delivered = (
    await query<{ id: string }>(t.databaseUrl, `SELECT id::text FROM webhook_deliveries WHERE status = 'delivered'`)
  )[0]!.id;
  const again = await admin(['webhooks', 'redeliver', endpoint, '--reason', 'once more', '--delivery', delivered]);
  expect(again.code).toBe(1);
  expect(again.stderr).toContain(`409 DELIVERIES_NOT_REDELIVERABLE: deliveries ${delivered} (delivered)`);

  const short = await admin(['webhooks', 'redeliver', endpoint, '--reason', 'x']);
  expect(short.code).toBe(2);
  expect(short.stderr).toContain('--reason');

  const badStatus = await admin(['webhooks', 'deliveries', endpoint, '--status', 'lost']);
  expect(badStatus.code).toBe(2);
  expect(badStatus.stderr).toContain('--status must be one of pending, delivered, failed, cancelled');

  const viewer = await runCli(['webhooks', 'list'], { url, token: t.tokens.viewer });
  expect(viewer.code).toBe(1);
  expect(viewer.stderr).toMatch(/403 FORBIDDEN/);
});

it('names the --delivery value it refuses, not its position in the list (exit 2), the first bad one of several', async () => {
  const bad = await admin(['webhooks', 'redeliver', endpoint, '--reason', 'receiver back', '--delivery', 'abc']);
  expect(bad.code, bad.stderr).toBe(2);
  expect(bad.stderr).toContain('Invalid --delivery "abc": a delivery ID is a positive integer');
  // Several (as separate values and comma-separated): the first bad one, by its value.
  const several = await admin([
    'webhooks',
    'redeliver',
    endpoint,
    '--reason',
    'receiver back',
    '--delivery',
    '7',
    '0,x',
  ]);
  expect(several.code, several.stderr).toBe(2);
  expect(several.stderr).toContain('Invalid --delivery "0": a delivery ID is a positive integer');
  expect(several.stderr).not.toMatch(/--delivery \(\d+\)/);
  // One given twice: that one, not the two positions ("items ## 1 and 0 are identical").
  const twice = await admin(['webhooks', 'redeliver', endpoint, '--reason', 'receiver back', '--delivery', '7', '7']);
  expect(twice.code, twice.stderr).toBe(2);
  expect(twice.stderr).toContain('Invalid --delivery: must not list a value twice ("7" is given more than once)');
  const j = JSON.parse(
    (await admin(['--json', 'webhooks', 'redeliver', endpoint, '--reason', 'receiver back', '--delivery', 'abc']))
      .stderr,
  );
  expect(j).toMatchObject({
    exitCode: 2,
    error: {
      message: 'Invalid --delivery "abc": a delivery ID is a positive integer',
      details: [{ field: 'body.deliveryIds.0', flag: '--delivery', value: 'abc' }],
    },
  });
});
