// The live view in a real headless browser (Debian's Chromium driven by playwright-core) against
// the real stack: API listening on 127.0.0.1, workers, PostgreSQL, Redis and a slow downstream.
// An operator enters the token, sees the operations list, opens a running operation, watches its
// progress strip advance from the event stream, pauses it with a reason, and the operation is
// paused. The token stays in the tab's sessionStorage: never in localStorage, never in a URL.
// Then what new-user trials found: the state shown while the stream replays history, a rollback
// that ended incomplete (its strip, its reason line, its Roll back button), a rejected plan in the
// list and a plan that never ran (no probe panel), an open page during an outage (it says since when
// it is not updated), the login form while signed in, and the browser's request for /favicon.ico.
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page, type Route } from 'playwright-core';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOf, command, ledger, range } from '../support/exec-helpers.ts';
import { findChromium } from '../support/chromium.ts';
import { query, seedRegistry, siteId } from '../support/seed.ts';

const APPS = 4;
/** How long the page may take to show something (a bounded wait, not a timing assertion). */
const POLL = { timeout: 15_000, interval: 100 };
// Wave 0 the internal tenants, then 10%, 40% and all of the rest; no bake. A chunk records its
// items' outcomes when it ends, so "done" moves wave by wave: several waves make it move often.
const ROLLOUT = { bakeSeconds: 0, concurrency: 2, waves: ['10%', '40%', '100%'] };

let h: ExecHarness;
let browser: Browser;
let base: string;
/** Every path the browsers asked this server for: a browser's own favicon request is not seen by Playwright. */
const served: string[] = [];
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 100, appsPerSite: APPS, internalTenants: 8 });
  await useHttpAdapter(h);
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  h.app.server.on('request', (req: { url?: string }) => served.push(req.url ?? ''));
  base = `http://127.0.0.1:${(h.app.server.address() as AddressInfo).port}`;
  browser = await chromium.launch({ executablePath: findChromium(), args: ['--no-sandbox'], headless: true });
});
afterAll(async () => {
  await browser?.close();
  h?.downstream.hang(0);
  await h?.close();
});

async function openWithToken(page: Page, token: string) {
  await page.goto(`${base}/ui`);
  await page.locator('#token').fill(token);
  await page.locator('#login button[type=submit]').click();
}

/** The API's answer while PostgreSQL is away (503 DEPENDENCY_UNAVAILABLE), as the browser gets it. */
const POSTGRES_AWAY = {
  status: 503,
  contentType: 'application/json',
  body: JSON.stringify({ code: 'DEPENDENCY_UNAVAILABLE', message: 'PostgreSQL could not be reached; retry later.' }),
};

/**
 * The first two requests the page makes to `url` meet PostgreSQL away (the API's 503), the rest go
 * through: an outage as the browser sees it. `asked` counts them all.
 */
async function outageFirst(page: Page, url: string) {
  const seen = { asked: 0 };
  await page.route(url, (route) => (seen.asked++ < 2 ? route.fulfill(POSTGRES_AWAY) : route.continue()));
  return seen;
}

/** Items done over every wave of the strip, as the page shows them. */
const doneOnPage = (page: Page) =>
  page.evaluate<number>(
    `[...document.querySelectorAll('#waves li')].reduce((n, li) => n + Number(li.dataset.done ?? 0), 0)`,
  );

/** Polls the page (bounded) until `check` holds; returns the last value read. */
async function pageUntil<T>(read: () => Promise<T>, check: (v: T) => boolean, what: string, timeoutMs = 30_000) {
  const end = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < end) {
    last = await read();
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

describe('live view in headless Chromium', () => {
  it('shows a running operation progressing, and its pause button pauses it with the reason given', async () => {
    // Slow deletes (each answered after 600 ms, a few in flight): 164 items take half a minute,
    // long enough to watch the operation and pause it.
    h.downstream.hang(600);
    const ids = appsOf([0, ...range(10, 50)], APPS);
    const op = await submitAndStart(h, { ids, rollout: ROLLOUT });

    const context = await browser.newContext();
    const page = await context.newPage();
    const urls: string[] = [];
    const streams: Promise<string | undefined>[] = []; // Last-Event-ID of every stream request
    page.on('request', (r) => {
      urls.push(r.url());
      if (r.url().endsWith('/events')) streams.push(r.allHeaders().then((hd) => hd['last-event-id']));
    });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    try {
      await openWithToken(page, h.tokens.operator);
      await expect.poll(() => page.locator('#whoami').textContent(), POLL).toBe('test-operator (operator)');

      // The list shows the operation, running, among the active ones at the top.
      const row = page.locator(`#ops tr[data-id="${op.id}"]`);
      await row.waitFor({ timeout: 15_000 });
      expect(await row.getAttribute('data-state')).toMatch(/^(running|baking)$/);
      expect(await page.locator('#ops tr').first().getAttribute('data-id')).toBe(op.id);

      await row.locator('a').click();
      await page.locator('#stream[data-stream="live"]').waitFor({ timeout: 15_000 });
      expect(await page.locator('#op-id').textContent()).toBe(op.id);
      expect(await page.locator('#waves li').count()).toBe(op.waves.length);

      // Progress arrives from the stream: the done count goes up while we watch.
      const first = await pageUntil(
        () => doneOnPage(page),
        (n) => n > 0,
        'items done on the page',
      );
      // A transition arrives live (the stream's cursor moves past the audit events read at load).
      const seqsShown = () =>
        page.evaluate<number[]>(`[...document.querySelectorAll('#timeline li')].map((li) => Number(li.dataset.seq))`);
      // The first stream resumed after the audit events the page read when it opened.
      const atLoad = Number(await streams[0]);
      expect(atLoad).toBeGreaterThan(0);
      const beforeDrop = Math.max(
        ...(await pageUntil(seqsShown, (seqs) => Math.max(...seqs) > atLoad, 'a live transition')),
      );
      // The connection drops (the server closes every connection): the page reconnects on its
      // own, resuming after the last event it got (Last-Event-ID), and goes on updating.
      h.app.server.closeAllConnections();
      await pageUntil(
        async () => streams.length,
        (n) => n >= 2,
        'the page to reconnect',
      );
      await page.locator('#stream[data-stream="live"]').waitFor({ timeout: 30_000 });
      const later = await pageUntil(
        () => doneOnPage(page),
        (n) => n > first,
        'the done count to increase',
      );
      expect(later).toBeGreaterThan(first);
      expect(later).toBeLessThan(ids.length);
      // Hold the remaining deletes, so the operation is surely still running when the button is pressed.
      h.downstream.hang(3_000);

      // The timeline shows what happened so far (approval, start).
      await expect.poll(() => page.locator('#timeline li[data-action="operation.approved"]').count(), POLL).toBe(1);
      // A wave's entries say which wave (counted from 1): "wave_started" alone did not (trial M).
      const waveEntries = await page.locator('#timeline li[data-action$="wave_started"]').allTextContents();
      expect(waveEntries.length).toBeGreaterThan(0);
      for (const t of waveEntries) expect(t).toMatch(/wave_started \(wave [1-9]\d*\)/);

      await page.locator('#actions button[data-action="pause"]').click();
      await page.locator('#reason').fill('watching the canary dashboards');
      await page.locator('#confirm-ok').click();
      await page.locator('#confirm').waitFor({ state: 'hidden' });

      await expect.poll(async () => (await getOperation(h, op.id)).state, POLL).toBe('paused');
      expect((await getOperation(h, op.id)).haltReason).toBe('watching the canary dashboards');
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('paused');
      await expect.poll(() => page.locator('#timeline li[data-action="operation.paused"]').count(), POLL).toBe(1);
      // The reason line says what the reason is about: a pause, not a halt.
      expect(await page.locator('#halt').textContent()).toBe('Paused: watching the canary dashboards');
      // Paused: resume is offered, pause no longer.
      expect(await page.locator('#actions button[data-action="resume"]').count()).toBe(1);
      expect(await page.locator('#actions button[data-action="pause"]').count()).toBe(0);

      // The token: in this tab's sessionStorage, nowhere else.
      // (Expressions run in the page: this project's TypeScript has no DOM types.)
      const storage = await page.evaluate<Record<string, unknown>>(
        `({ session: sessionStorage.getItem('blastgate.token'), local: localStorage.length, href: location.href, cookie: document.cookie })`,
      );
      expect(storage).toEqual({ session: h.tokens.operator, local: 0, href: `${base}/ui#/op/${op.id}`, cookie: '' });
      expect(urls.filter((u) => u.includes(h.tokens.operator))).toEqual([]);
      expect(urls.every((u) => u.startsWith(base))).toBe(true);
      expect(pageErrors).toEqual([]);

      // Reconnected with the cursor, and the timeline holds every audit event of the operation
      // exactly once: nothing missed across the drop, nothing twice.
      const cursors = await Promise.all(streams);
      expect(cursors.length).toBeGreaterThanOrEqual(2);
      expect(Number(cursors[1])).toBeGreaterThanOrEqual(beforeDrop);
      const audited = await query<{ seq: string }>(
        h.databaseUrl,
        'SELECT seq FROM audit_events WHERE operation_id = $1 ORDER BY seq',
        [op.id],
      );
      const shown = await page.evaluate<string[]>(
        `[...document.querySelectorAll('#timeline li')].map((li) => li.dataset.seq).reverse()`,
      );
      expect(shown).toEqual(audited.map((r) => String(r.seq)));
    } finally {
      await context.close();
      h.downstream.hang(0);
    }
  });

  it('shows a bad token as 401 with its code, a viewer no buttons, and a refused command with the server code', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await openWithToken(page, 'bg_not_a_token_at_all_0000000000');
      await expect.poll(() => page.locator('#error').textContent(), POLL).toMatch(/^401 [A-Z_]+: /);
      expect(await page.locator('#login').isVisible()).toBe(true);
      expect(await page.evaluate<number>('sessionStorage.length + localStorage.length')).toBe(0);

      const planned = await submitAndStart(h, { ids: appsOf([70], APPS), rollout: ROLLOUT }, false);
      await openWithToken(page, h.tokens.viewer);
      await page.goto(`${base}/ui#/op/${planned.id}`);
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('approved');
      expect(await page.locator('#actions button').count()).toBe(0);

      // An operator sees abort. A reason too short is refused by the page; a command the server
      // refuses (someone else cancelled the operation meanwhile) shows the server's code.
      await page.evaluate(`sessionStorage.setItem('blastgate.token', ${JSON.stringify(h.tokens.operator)})`);
      await page.reload();
      await page.locator('#actions button[data-action="abort"]').click();
      await page.locator('#reason').fill('no');
      await page.locator('#confirm-ok').click();
      await expect.poll(() => page.locator('#confirm-error').textContent(), POLL).toMatch(/at least 3/);
      expect((await command(h, 'operator', planned.id, 'abort', { reason: 'cancelled elsewhere' })).status).toBe(200);
      await page.locator('#reason').fill('wrong change window');
      await page.locator('#confirm-ok').click();
      await expect.poll(() => page.locator('#confirm-error').textContent(), POLL).toMatch(/^409 INVALID_TRANSITION: /);
      await page.locator('#confirm-cancel').click();
      // The stream brought the cancellation: the page shows it and offers no button any more.
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('cancelled');
      expect(await page.locator('#actions button').count()).toBe(0);
      expect((await getOperation(h, planned.id)).haltReason).toBe('cancelled elsewhere');
    } finally {
      await context.close();
    }
  });

  it('counts a cascade\'s descendants apart from the listed type in its summary (not "5 site items" for 1 site)', async () => {
    await query(h.databaseUrl, `UPDATE resource_types SET cascade_to = ARRAY['app'] WHERE name = 'site'`);
    const context = await browser.newContext();
    try {
      const created = await request(h.app.server)
        .post('/v1/operations')
        .set('authorization', h.auth('requester'))
        .send({ targetType: 'site', reason: 'Decommission a site', ticket: 'CHG-12', ids: ['site_00077'] });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const page = await context.newPage();
      await openWithToken(page, h.tokens.approver);
      await page.locator(`#ops tr[data-id="${created.body.id}"] a`).click();
      await expect
        .poll(() => page.locator('#op-summary').textContent(), POLL)
        .toMatch(/^delete of 5 items: 1 site, 4 app by cascade across 1 tenant · /);
    } finally {
      await context.close();
      await query(h.databaseUrl, `UPDATE resource_types SET cascade_to = '{}' WHERE name = 'site'`);
    }
  });

  it('lets an approver approve a planned operation after showing its plan summary and hash', async () => {
    const created = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-9', ids: appsOf([75, 76], APPS) });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const { id, planHash } = created.body as { id: string; planHash: string };
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await openWithToken(page, h.tokens.approver);
      await page.locator(`#ops tr[data-id="${id}"] a`).click();
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('planned');
      // An approver sees approve only.
      expect(await page.locator('#actions button').evaluateAll((bs) => bs.map((b) => b.textContent))).toEqual([
        'Approve…',
      ]);
      await page.locator('#actions button[data-action="approve"]').click();
      expect(await page.locator('#confirm-hash').textContent()).toBe(planHash);
      expect(await page.locator('#confirm-plan-summary').textContent()).toMatch(/^8 items, 2 tenants, \d+ waves/);
      await page.locator('#reason').fill('checked the tenant list');
      await page.locator('#confirm-ok').click();
      await expect.poll(async () => (await getOperation(h, id)).state, POLL).toBe('approved');
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('approved');
      const [approval] = await query<{ payload: { comment?: string; planHash?: string } }>(
        h.databaseUrl,
        `SELECT payload FROM audit_events WHERE operation_id = $1 AND action = 'operation.approved'`,
        [id],
      );
      expect(approval?.payload.comment).toBe('checked the tenant list');
      // An operator starts it from the page: there was no Start button, and the flow ended in curl.
      const operator = await (await browser.newContext()).newPage();
      await openWithToken(operator, h.tokens.operator);
      await operator.locator(`#ops tr[data-id="${id}"] a`).click();
      await expect.poll(() => operator.locator('#op-state').textContent(), POLL).toBe('approved');
      expect(await operator.locator('#actions button').evaluateAll((bs) => bs.map((b) => b.textContent))).toEqual([
        'Start…',
        'Abort…',
      ]);
      await operator.locator('#actions button[data-action="start"]').click();
      await operator.locator('#reason').fill('checked the plan');
      await operator.locator('#confirm-ok').click();
      await expect.poll(async () => (await getOperation(h, id)).state, POLL).not.toBe('approved');
      await operator.context().close();
      const [started] = await query<{ payload: { reason?: string } }>(
        h.databaseUrl,
        `SELECT payload FROM audit_events WHERE operation_id = $1 AND action = 'operation.started'`,
        [id],
      );
      expect(started?.payload.reason).toBe('checked the plan');
    } finally {
      await context.close();
      await command(h, 'operator', id, 'pause', { reason: 'end of the test' });
    }
  });

  it('shows the bake countdown, the probe results and the halt reason of an unhealthy canary', async () => {
    // Wave 0 (an internal tenant) bakes 8 s: its countdown and probe round show; wave 1's tenant
    // then probes unhealthy in its bake and the operation halts before wave 2, saying why.
    const wave1Tenant = 'tenant_00090';
    h.downstream.probe(wave1Tenant, 'unhealthy');
    const op = await submitAndStart(h, {
      ids: appsOf([1, 90, 91], APPS),
      rollout: { bakeSeconds: 8, concurrency: 2, waves: ['1', '100%'] },
      haltPolicy: { onHalt: 'pause' },
    });
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await openWithToken(page, h.tokens.viewer);
      await page.locator('#ops').waitFor();
      await page.goto(`${base}/ui#/op/${op.id}`);
      await expect.poll(() => page.locator('#bake').textContent(), POLL).toMatch(/^Baking: 0:0\d left$/);
      await expect.poll(() => page.locator('#probes tbody tr').count(), POLL).toBeGreaterThan(0);
      expect(await page.locator('#probes tbody tr').first().textContent()).toMatch(/^tenant_\d+healthy/);
      await expect.poll(() => page.locator('#op-state').textContent(), { ...POLL, timeout: 45_000 }).toBe('halted');
      expect(await page.locator('#halt').textContent()).toMatch(
        new RegExp(`^Halted: wave 2 of 3: unhealthy probes: ${wave1Tenant}`),
      );
      expect(await page.locator('#bake').isVisible()).toBe(false);
      expect(await page.locator(`#probes tr.probe-unhealthy`).count()).toBe(1);
      // The unhealthy row is red (--failed), as the halt it caused.
      expect(
        await page.evaluate<string>(`getComputedStyle(document.querySelector('#probes tr.probe-unhealthy')).color`),
      ).toBe('rgb(198, 40, 40)');
      expect(await page.locator('#actions button').count()).toBe(0); // a viewer
    } finally {
      await context.close();
      h.downstream.reset();
    }
  });

  it('shows the state the operation is in now while the stream replays its history', async () => {
    // Paused and resumed, then running slowly (each delete answered after 3 s). The page's stream
    // starts from the beginning, as a client's without a cursor does (or one that resumes far
    // behind): the replayed transitions say approved, running, paused, running…, each the state of
    // its time. The page shows only the state the operation is in.
    h.downstream.hang(3_000);
    const op = await submitAndStart(h, { ids: appsOf(range(50, 58), APPS), rollout: ROLLOUT });
    expect((await command(h, 'operator', op.id, 'pause', { reason: 'a look at the dashboards' })).status).toBe(200);
    expect((await command(h, 'operator', op.id, 'resume', {})).status).toBe(200);
    expect((await getOperation(h, op.id)).state).toMatch(/^(running|baking)$/);

    const context = await browser.newContext();
    // Every text the state badge is given, in order: a transition rendered between two polls
    // would escape a poll. (An init script is injected by the browser, not loaded by the page.)
    await context.addInitScript(`
      window.statesShown = [];
      new MutationObserver((records) => {
        for (const r of records)
          if (r.target.id === 'op-state') for (const n of r.addedNodes) window.statesShown.push(n.textContent);
      }).observe(document, { childList: true, subtree: true });
    `);
    const page = await context.newPage();
    await page.route(`**/v1/operations/${op.id}/events`, async (route) => {
      const headers = await route.request().allHeaders();
      delete headers['last-event-id'];
      await route.continue({ headers });
    });
    try {
      await openWithToken(page, h.tokens.viewer);
      await page.locator('#ops').waitFor();
      await page.goto(`${base}/ui#/op/${op.id}`);
      await page.locator('#stream[data-stream="live"]').waitFor({ timeout: 15_000 });
      // The replay is through once the resume, the newest event, arrived by the stream.
      await expect.poll(() => page.locator('#timeline li[data-action="operation.resumed"]').count(), POLL).toBe(1);
      const transitions = await query<{ action: string }>(
        h.databaseUrl,
        `SELECT action FROM audit_events WHERE operation_id = $1 AND payload->>'to' = 'paused'`,
        [op.id],
      );
      expect(transitions.map((t) => t.action)).toEqual(['operation.paused']); // it was replayed, saying paused
      const shown = await page.evaluate<string[]>('window.statesShown');
      expect(shown.length).toBeGreaterThan(0);
      expect(shown.filter((s) => s !== 'running' && s !== 'baking')).toEqual([]);
      expect(await page.locator('#halt').isVisible()).toBe(false);
    } finally {
      await context.close();
      await command(h, 'operator', op.id, 'pause', { reason: 'end of the test' });
      h.downstream.hang(0);
    }
  });

  it('follows a completed operation again when it is rolled back from elsewhere (the API, the CLI)', async () => {
    // The stream ends with `completed`, and the page stopped there: a rollback sent through the
    // API was never shown, the page saying completed while the operation rolled back (a trial).
    const op = await submitAndStart(h, { ids: appsOf(range(70, 72), APPS), rollout: { ...ROLLOUT, waves: ['100%'] } });
    expect((await waitForState(h, op.id, ['completed', 'completed_with_failures', 'halted'])).state).toBe('completed');
    const page = await browser.newPage();
    try {
      await openWithToken(page, h.tokens.viewer);
      await page.locator('#ops').waitFor();
      await page.goto(`${base}/ui#/op/${op.id}`);
      await page.locator('#stream[data-stream="ended"]').waitFor({ timeout: 15_000 });
      expect(await page.locator('#op-state').textContent()).toBe('completed');
      expect((await command(h, 'operator', op.id, 'rollback', { reason: 'undo from the CLI' })).status).toBe(200);
      await expect
        .poll(() => page.locator('#timeline li[data-action="operation.rollback_started"]').count(), POLL)
        .toBe(1);
      expect((await waitForState(h, op.id, ['rolled_back', 'rollback_incomplete'])).state).toBe('rolled_back');
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('rolled_back');
      await page.locator('#stream[data-stream="ended"]').waitFor({ timeout: 15_000 });
    } finally {
      await page.close();
    }
  });

  it('shows a rollback that ended incomplete: restore failures in red, each item once, its reason, and Roll back again', async () => {
    // 8 items deleted; the rollback restores 5 and 3 restores are refused for good (422), so it
    // ends rollback_incomplete.
    const op = await submitAndStart(h, { ids: appsOf([80, 81], APPS), rollout: ROLLOUT });
    await waitForState(h, op.id, ['completed']);
    h.downstream.failOnly(['restore']);
    h.downstream.failNext(3, 422);
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      expect((await command(h, 'operator', op.id, 'rollback', { reason: 'undo the cleanup' })).status).toBe(200);
      expect((await waitForState(h, op.id, ['rollback_incomplete', 'rolled_back'])).state).toBe('rollback_incomplete');
      const items = await ledger(h, op.id);
      const inState = (st: string) => items.filter((i) => i.state === st).length;
      expect([inState('restored'), inState('restore_failed')]).toEqual([5, 3]);

      await openWithToken(page, h.tokens.operator);
      await page.locator('#ops').waitFor();
      await page.goto(`${base}/ui#/op/${op.id}`);
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('rollback_incomplete');
      await page.locator('#stream[data-stream="ended"]').waitFor({ timeout: 15_000 });
      const waves = await page.evaluate<Record<string, string>[]>(
        `[...document.querySelectorAll('#waves li')].map((li) => ({ ...li.dataset,
          widths: [...li.querySelectorAll('.seg')].map((s) => parseFloat(s.style.width)).join(','),
          text: li.querySelector('.wave-label').textContent }))`,
      );
      const sum = (k: string) => waves.reduce((n, w) => n + Number(w[k]), 0);
      // What the ledger says, per item once: nothing is left "done" (each one was restored or its
      // restore failed), and the strip shows the failed restores.
      expect({
        done: sum('done'),
        failed: sum('failed'),
        restored: sum('restored'),
        restoreFailed: sum('restoreFailed'),
      }).toEqual({ done: 0, failed: 0, restored: 5, restoreFailed: 3 });
      for (const w of waves) {
        const counted = ['done', 'failed', 'restored', 'restoreFailed'].reduce((n, k) => n + Number(w[k]), 0);
        expect(counted, JSON.stringify(w)).toBeLessThanOrEqual(Number(w.items));
        const drawn = w.widths!.split(',').reduce((n, x) => n + Number(x), 0);
        expect(drawn, JSON.stringify(w)).toBeLessThanOrEqual(100.0001);
        if (Number(w.restoreFailed) > 0) expect(w.text).toContain(` · ${w.restoreFailed} restore failed of `);
      }
      expect(
        await page.evaluate<string>(
          `getComputedStyle(document.querySelector('#waves .seg.restore-failed')).backgroundColor`,
        ),
      ).toBe('rgb(142, 0, 0)');
      expect(await page.locator('#halt').textContent()).toBe(
        'Rollback incomplete: rollback by test-operator: undo the cleanup: 3 item(s) could not be restored; see the item ledger',
      );

      // A rollback can be tried again from here: the page offers it. A retry tries the refused
      // restores again too (the downstream answers them now), and the page follows it to its end.
      expect(await page.locator('#actions button').evaluateAll((bs) => bs.map((b) => b.textContent))).toEqual([
        'Roll back…',
      ]);
      await page.locator('#actions button[data-action="rollback"]').click();
      await page.locator('#reason').fill('try the restores again');
      await page.locator('#confirm-ok').click();
      await page.locator('#confirm').waitFor({ state: 'hidden' });
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('rolled_back');
      expect(await page.locator('#timeline li[data-action="operation.rollback_started"]').count()).toBe(2);
      expect((await getOperation(h, op.id)).state).toBe('rolled_back');
    } finally {
      await context.close();
      h.downstream.failOnly(null);
      h.downstream.failNext(0, 422);
    }
  });

  it('shows what a running rollback is restoring as restoring, not as done (trial M: drawn green, or nowhere)', async () => {
    const op = await submitAndStart(h, { ids: appsOf([84, 85], APPS), rollout: ROLLOUT });
    await waitForState(h, op.id, ['completed']);
    // Every restore is answered 503: the rollback keeps trying them (restoring) and runs on.
    h.downstream.failOnly(['restore']);
    h.downstream.failAll(503);
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      expect((await command(h, 'operator', op.id, 'rollback', { reason: 'undo the cleanup' })).status).toBe(200);
      await expect
        .poll(async () => (await ledger(h, op.id)).filter((i) => i.state === 'restore_failed').length, POLL)
        .toBe(2 * APPS);
      await openWithToken(page, h.tokens.viewer);
      await page.locator('#ops').waitFor();
      await page.goto(`${base}/ui#/op/${op.id}`);
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('rolling_back');
      const strip = () =>
        page.evaluate<Record<string, string>[]>(
          `[...document.querySelectorAll('#waves li')].map((li) => ({ ...li.dataset, text: li.querySelector('.wave-label').textContent }))`,
        );
      const sum = (ws: Record<string, string>[], k: string) => ws.reduce((n, w) => n + Number(w[k]), 0);
      // Once the stream's progress has come (the page reads the operation first, then the stream).
      await page.locator('#stream[data-stream="live"]').waitFor({ timeout: 15_000 });
      await expect.poll(async () => sum(await strip(), 'restoring'), POLL).toBe(2 * APPS);
      const waves = await strip();
      expect({ done: sum(waves, 'done'), failed: sum(waves, 'failed'), restored: sum(waves, 'restored') }).toEqual({
        done: 0,
        failed: 0,
        restored: 0,
      });
      for (const w of waves) if (Number(w.restoring) > 0) expect(w.text).toContain(` · ${w.restoring} restoring · `);
    } finally {
      await context.close();
      h.downstream.failAll(null);
      h.downstream.failOnly(null);
      await command(h, 'operator', op.id, 'abort', { reason: 'end of the test', endRollback: true });
    }
  });

  it('says why a rejected plan was rejected, and loads a page opened during a database outage once it answers (trial M)', async () => {
    // The 2022 mistake: site IDs in an app delete. The page said "delete of 0 app items across 0
    // tenants · 0 waves", no reason.
    const id = await rejectedPlan(86, [87, 88]);
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      // The token's check meets the outage first (a page loaded during it: trial N).
      const whoami = await outageFirst(page, '**/v1/auth/whoami');
      await openWithToken(page, h.tokens.viewer);
      await expect.poll(() => page.locator('#error').textContent(), POLL).toContain('503 DEPENDENCY_UNAVAILABLE');
      await page.locator('#ops').waitFor();
      await expect.poll(() => page.locator('#whoami').textContent(), POLL).toBe('test-viewer (viewer)');
      expect(whoami.asked).toBeGreaterThanOrEqual(3);
      // The first two reads of the operation meet PostgreSQL away (503), as during an outage: the
      // page stayed on the error until reloaded by hand.
      const read = await outageFirst(page, `**/v1/operations/${id}`);
      await page.goto(`${base}/ui#/op/${id}`);
      await expect.poll(() => page.locator('#error').textContent(), POLL).toContain('503 DEPENDENCY_UNAVAILABLE');
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('rejected');
      expect(read.asked).toBeGreaterThanOrEqual(3);
      expect(await page.locator('#error').isVisible()).toBe(false);
      expect(await page.locator('#op-summary').textContent()).toMatch(
        /^delete of 3 submitted app IDs: nothing planned/,
      );
      const why = await page.locator('#halt').textContent();
      expect(why).toContain('Rejected: 2 type_mismatch of 3; nothing runs from it.');
      expect(why).toContain(`${siteId(87)} (type_mismatch: is site)`);
      expect(why).toContain(`GET /v1/operations/${id}/report (blastgate report ${id})`);
    } finally {
      await context.close();
    }
  });

  /** A recorded rejection (422 PLAN_REJECTED): an app and two site IDs in an app delete. */
  async function rejectedPlan(app: number, sites: [number, number]) {
    const res = await request(h.app.server)
      .post('/v1/operations')
      .set('authorization', h.auth('requester'))
      .send({
        targetType: 'app',
        reason: 'Remove the legacy app',
        ticket: 'CHG-1',
        ids: [appsOf([app], APPS)[0], siteId(sites[0]), siteId(sites[1])],
      });
    expect(res.status, JSON.stringify(res.body)).toBe(422);
    return res.body.details.operationId as string;
  }

  it('lists a rejected plan by what was submitted and why, not as "0 items" (trial)', async () => {
    const rejected = await rejectedPlan(92, [93, 94]);
    const planned = (await submitAndStart(h, { ids: appsOf([95], APPS), rollout: ROLLOUT }, false)).id;
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await openWithToken(page, h.tokens.viewer);
      const cells = (id: string) => page.locator(`#ops tr[data-id="${id}"] td`).allTextContents();
      await page.locator(`#ops tr[data-id="${rejected}"]`).waitFor({ timeout: 15_000 });
      // Operation, State, Kind, Type, Items, Tenants, Created.
      expect((await cells(rejected)).slice(1, 6)).toEqual([
        'rejected',
        'delete',
        'app',
        '3 submitted · rejected (2 type_mismatch)',
        '–',
      ]);
      // A plan is listed by its items, as before.
      expect((await cells(planned)).slice(1, 6)).toEqual(['approved', 'delete', 'app', String(APPS), '1']);
    } finally {
      await context.close();
      await command(h, 'operator', planned, 'abort', { reason: 'end of the test' });
    }
  });

  it('shows no probe panel for a plan that never ran: rejected, or cancelled before its start (trial)', async () => {
    // A rejected plan said "nothing runs from it" above "No probe round yet", as if it would run.
    const rejected = await rejectedPlan(97, [98, 99]);
    // Cancelled before its start: its waves were planned, none ran.
    const cancelled = (await submitAndStart(h, { ids: appsOf([89], APPS), rollout: ROLLOUT }, false)).id;
    expect((await command(h, 'operator', cancelled, 'abort', { reason: 'not this week' })).status).toBe(200);
    expect((await getOperation(h, cancelled)).state).toBe('cancelled');
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await openWithToken(page, h.tokens.viewer);
      await page.locator('#ops').waitFor();
      await page.goto(`${base}/ui#/op/${rejected}`);
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('rejected');
      await page.locator('#stream[data-stream="ended"]').waitFor({ timeout: 15_000 });
      expect(await page.locator('#halt').textContent()).toContain('nothing runs from it');
      // Nothing about probe rounds, and no empty Waves heading: there is no plan.
      const shown = await page.locator('#op').innerText();
      expect(shown).not.toMatch(/probe/i);
      expect(shown).not.toMatch(/\bwaves\b/i);
      expect(await page.locator('#probes-panel').isVisible()).toBe(false);

      await page.goto(`${base}/ui#/op/${cancelled}`);
      await expect.poll(() => page.locator('#op-state').textContent(), POLL).toBe('cancelled');
      await page.locator('#stream[data-stream="ended"]').waitFor({ timeout: 15_000 });
      expect(await page.locator('#halt').textContent()).toBe('Cancelled: not this week');
      expect(await page.locator('#op').innerText()).not.toMatch(/probe/i);
      expect(await page.locator('#waves li').count()).toBeGreaterThan(0); // its plan's waves, none run
    } finally {
      await context.close();
    }
  });

  it('says an open page is not updated while the service answers 503 or nothing, until it answers again (trial)', async () => {
    // A page already open when PostgreSQL went away kept showing its old state, with no sign that
    // it was old. The outage as the browser sees it: 503 DEPENDENCY_UNAVAILABLE, or no answer.
    let away: '503' | 'network' | 'frame' | null = null;
    const outage = (route: Route) =>
      away === '503' ? route.fulfill(POSTGRES_AWAY) : away === 'network' ? route.abort('failed') : route.continue();
    const notice = /^Not updated since \d\d:\d\d:\d\d: the service answers 503 \(PostgreSQL unavailable\); retrying$/;
    const approved = (await submitAndStart(h, { ids: appsOf([96], APPS), rollout: ROLLOUT }, false)).id;
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.route((u) => u.pathname === '/v1/operations', outage);
      await openWithToken(page, h.tokens.viewer);
      const row = page.locator(`#ops tr[data-id="${approved}"]`);
      await row.waitFor({ timeout: 15_000 });
      expect(await page.locator('#stale').isVisible()).toBe(false);

      // The list's own refresh (every 5 s) meets the outage: the rows stay, and the page says they are old.
      away = '503';
      await expect.poll(() => page.locator('#stale').isVisible(), POLL).toBe(true);
      expect(await page.locator('#stale').textContent()).toMatch(notice);
      expect(await row.isVisible()).toBe(true);
      expect(await page.locator('#error').isVisible()).toBe(false);
      // An answer again: the notice goes with the next refresh.
      away = null;
      await expect.poll(() => page.locator('#stale').isVisible(), POLL).toBe(false);
      // No answer at all (the server down, the network): said as such.
      away = 'network';
      await page.locator('#refresh').click();
      await expect
        .poll(() => page.locator('#stale').textContent(), POLL)
        .toMatch(/^Not updated since \d\d:\d\d:\d\d: the service does not answer \(network error\); retrying$/);
      away = null;
      await page.locator('#refresh').click();
      await expect.poll(() => page.locator('#stale').isVisible(), POLL).toBe(false);

      // An operation's page: its event stream (open while the operation waits for its start) drops,
      // and its reconnects meet the outage.
      await page.route(
        (u) => u.pathname === `/v1/operations/${approved}/events`,
        (route) =>
          away === 'frame'
            ? route.fulfill({
                status: 200,
                contentType: 'text/event-stream',
                body: `event: unavailable\ndata: ${JSON.stringify({ since: new Date().toISOString(), detail: 'database away' })}\n\n`,
              })
            : outage(route),
      );
      await page.goto(`${base}/ui#/op/${approved}`);
      await page.locator('#stream[data-stream="live"]').waitFor({ timeout: 15_000 });
      expect(await page.locator('#op-state').textContent()).toBe('approved');
      expect(await page.locator('#probes-panel').textContent()).toContain('No probe round yet.'); // it may still run
      away = '503';
      h.app.server.closeAllConnections();
      await expect.poll(() => page.locator('#stale').textContent(), POLL).toMatch(notice);
      expect(await page.locator('#stale').isVisible()).toBe(true);
      expect(await page.locator('#op-state').textContent()).toBe('approved');
      expect(await page.locator('#error').isVisible()).toBe(false);
      away = null;
      await expect.poll(() => page.locator('#stale').isVisible(), POLL).toBe(false);
      await page.locator('#stream[data-stream="live"]').waitFor({ timeout: 15_000 });
      // The server's own word on an open stream: it cannot read the operation (PostgreSQL away).
      away = 'frame';
      h.app.server.closeAllConnections();
      await expect
        .poll(() => page.locator('#stale').textContent(), POLL)
        .toMatch(
          /^Not updated since \d\d:\d\d:\d\d: the service cannot read the operation \(PostgreSQL unavailable\); retrying$/,
        );
      away = null;
      await expect.poll(() => page.locator('#stale').isVisible(), POLL).toBe(false);
      await page.locator('#stream[data-stream="live"]').waitFor({ timeout: 15_000 });
    } finally {
      away = null;
      await context.close();
    }
  });

  it('hides the login form while signed in, and shows it again after "Forget token"', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await openWithToken(page, h.tokens.viewer);
      await expect.poll(() => page.locator('#whoami').textContent(), POLL).toBe('test-viewer (viewer)');
      expect(await page.locator('#login').isVisible()).toBe(false);
      expect(await page.locator('#list').isVisible()).toBe(true);
      await page.locator('#forget').click();
      expect(await page.locator('#login').isVisible()).toBe(true);
      expect(await page.locator('#list').isVisible()).toBe(false);
      expect(await page.locator('#forget').isVisible()).toBe(false);
    } finally {
      await context.close();
    }
  });

  it('declares its icon, so the browser never asks for /favicon.ico (a 404)', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      // The browser asks for its icon once the page has loaded: half a second without a request
      // (networkidle) leaves it time to. The tests before this one loaded the page too.
      await page.goto(`${base}/ui`, { waitUntil: 'networkidle' });
      expect(served).toContain('/ui');
      expect(served.filter((u) => u.startsWith('/favicon'))).toEqual([]);
      expect(
        await page.evaluate<string[]>(`[...document.querySelectorAll('link[rel="icon"]')].map((l) => l.href)`),
      ).toEqual(['data:,']);
    } finally {
      await context.close();
    }
  });
});
