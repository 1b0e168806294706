// blastgate list against the real API: the operations newest first, one line each with state,
// progress, ticket and requester; a rejected plan by what rejected it; filters and paging as the
// API's, the next page's command printed; --json the API's page; a refused filter names the flag.
import { mkdtemp, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { jsonError, runCli } from '../support/cli.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';

let t: TestApp;
let url: string;
let planned: string;
let halted: string;
let rejected: string;

beforeAll(async () => {
  t = await buildTestApp();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  await seedRegistry(t.databaseUrl, { sites: 4, appsPerSite: 3 });
  const submit = async (ids: string[], ticket: string) =>
    request(t.app.server)
      .post('/v1/operations')
      .set('authorization', t.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove the legacy app', ticket, ids });
  const a = await submit([appId(0, 0), appId(1, 0), appId(2, 0)], 'CHG-1');
  expect(a.status, JSON.stringify(a.body)).toBe(201);
  planned = a.body.id;
  const b = await submit([appId(3, 0)], 'CHG-2');
  expect(b.status, JSON.stringify(b.body)).toBe(201);
  halted = b.body.id;
  // The lifecycle is tested elsewhere: here only what a list shows of a halted operation.
  await query(t.databaseUrl, `UPDATE operations SET state = 'halted', halt_reason = $2 WHERE id = $1`, [
    halted,
    'wave 1: failure rate 100% > 5% (1 of 1 items failed)',
  ]);
  const c = await submit([appId(0, 1), siteId(1), siteId(2)], 'CHG-3');
  expect(c.status).toBe(422);
  rejected = c.body.details.operationId;
});
afterAll(async () => {
  await t?.close();
});

const viewer = (args: string[]) => runCli(args, { url, token: t.tokens.viewer });

it('lists the operations newest first, one line each, a rejected plan by what rejected it', async () => {
  const r = await viewer(['list']);
  expect(r.code, r.stderr).toBe(0);
  const lines = r.stdout.trim().split('\n');
  expect(lines[0]).toMatch(
    new RegExp(
      `^${rejected}  delete app  rejected \\(3 submitted: 2 type_mismatch\\)  CHG-3 · test-requester · \\d{4}-`,
    ),
  );
  expect(lines[1]).toMatch(
    new RegExp(`^${halted}  delete app  halted · 0 of 1 done · 1 tenant  CHG-2 · test-requester · \\d{4}-`),
  );
  expect(lines[2]).toBe('  wave 1: failure rate 100% > 5% (1 of 1 items failed)');
  expect(lines[3]).toMatch(new RegExp(`^${planned}  delete app  planned · 0 of 3 done · 3 tenants  CHG-1 · `));
  expect(lines).toHaveLength(4);
});

it('says why a live operation does not move now: a bake and its end, a velocity cap and until when', async () => {
  const until = new Date(Date.now() + 60_000).toISOString();
  await query(
    t.databaseUrl,
    `UPDATE operations SET state = 'baking', current_wave = 0, bake_until = $2 WHERE id = $1`,
    [planned, until],
  );
  try {
    const baking = await viewer(['list', '--state', 'baking']);
    expect(baking.stdout).toMatch(new RegExp(`^${planned}  delete app  baking · wave 1/\\d+ · bake until ${until} · `));
    await query(
      t.databaseUrl,
      `UPDATE operations SET state = 'running', bake_until = NULL, throttled_by = 'maxItemsPerMinute', throttled_until = $2 WHERE id = $1`,
      [planned, until],
    );
    const held = await viewer(['--json', 'list', '--state', 'running']);
    expect(JSON.parse(held.stdout).items[0]).toMatchObject({
      id: planned,
      bakeUntil: null,
      throttled: { cap: 'maxItemsPerMinute', until },
    });
    const line = await viewer(['list', '--state', 'running']);
    expect(line.stdout).toContain(`running · wave 1/`);
    expect(line.stdout).toContain(` · held back by maxItemsPerMinute until ${until} · `);
  } finally {
    await query(
      t.databaseUrl,
      `UPDATE operations SET state = 'planned', current_wave = NULL, bake_until = NULL, throttled_by = NULL, throttled_until = NULL WHERE id = $1`,
      [planned],
    );
  }
});

it('says in status, too, what rejected a plan', async () => {
  const r = await viewer(['status', rejected]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toContain('  3 submitted, rejected for 2 type_mismatch\n');
  expect(r.stdout).toContain(`  full report: blastgate report ${rejected}`);
});

it('filters by state and kind, pages with the command for the next page, and says when nothing matches', async () => {
  const halt = await viewer(['list', '--state', 'halted,planned', '--kind', 'delete']);
  expect(halt.code, halt.stderr).toBe(0);
  expect(
    halt.stdout
      .split('\n')
      .filter((l) => l.startsWith('op_'))
      .map((l) => l.split(' ')[0]),
  ).toEqual([halted, planned]);

  const first = await viewer(['list', '--limit', '1']);
  expect(first.code, first.stderr).toBe(0);
  expect(first.stdout).toContain(`More: blastgate list --limit 1 --cursor ${rejected}\n`);
  // The flags it was given on its command line, --url and --token-file included (never --token).
  const tokenFile = join(await mkdtemp(join(tmpdir(), 'bg-list-')), 'token');
  await writeFile(tokenFile, t.tokens.viewer, { mode: 0o600 });
  const flagged = await runCli(['--url', url, '--token-file', tokenFile, 'list', '--limit', '1'], {});
  expect(flagged.code, flagged.stderr).toBe(0);
  expect(flagged.stdout).toContain(
    `More: blastgate --url ${url} --token-file ${tokenFile} list --limit 1 --cursor ${rejected}\n`,
  );
  const given = await runCli(['--url', url, '--token', t.tokens.viewer, 'list', '--limit', '1'], {});
  expect(given.stdout).toContain(`More: blastgate --url ${url} list --limit 1 --cursor ${rejected}\n`);
  expect(given.stdout).not.toContain(t.tokens.viewer);
  const second = await viewer(['list', '--limit', '1', '--cursor', rejected]);
  expect(second.stdout.split('\n')[0]).toMatch(new RegExp(`^${halted} `));
  // The last page, exactly full: no next page to offer.
  const last = await viewer(['list', '--limit', '1', '--cursor', halted]);
  expect(last.stdout.split('\n')[0]).toMatch(new RegExp(`^${planned} `));
  expect(last.stdout).not.toContain('More:');

  // Between waves an operation is baking: a filter on running alone says so.
  const running = await viewer(['list', '--state', 'running']);
  expect(running.stdout).toContain('No operations in state running.');
  expect(running.stdout).toContain('add --state baking to see those too');

  const none = await viewer(['list', '--state', 'running', '--kind', 'restore']);
  expect(none.code, none.stderr).toBe(0);
  expect(none.stdout.split('\n')[0]).toBe('No operations in state running of kind restore.');
});

it('prints the API page with --json, and names the flag of a refused filter', async () => {
  const r = await viewer(['--json', 'list', '--state', 'planned']);
  expect(r.code, r.stderr).toBe(0);
  const page = JSON.parse(r.stdout);
  expect(page.items.map((o: { id: string }) => o.id)).toEqual([planned]);
  expect(page).toMatchObject({ nextCursor: null });

  const bad = await viewer(['--json', 'list', '--state', 'runing']);
  expect(bad.code).toBe(2);
  const { error } = jsonError(bad);
  expect(error.code).toBe('VALIDATION_FAILED');
  expect(error.message).toContain('--state');
  expect(error.message).toContain('(did you mean "running"?)');
  // Both ends of --limit are refused here, with the same words (201 was the server's refusal).
  for (const n of ['0', '201']) {
    const limit = await viewer(['list', '--limit', n]);
    expect(limit.code).toBe(2);
    expect(limit.stderr).toContain(`--limit must be a whole number, from 1 to 200 (got "${n}")`);
  }
  const trailing = await viewer(['list', '--state', 'planned,']);
  expect(trailing.code, trailing.stderr).toBe(0);
  expect(trailing.stdout).toContain(planned);
});
