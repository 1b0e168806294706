// The Swagger UI dashboard (/docs) in a real headless browser (Debian's Chromium driven by
// playwright-core) against the real app listening on 127.0.0.1: an operator authorizes with a
// token, then clicks "Try it out" and "Execute" on the registry routes and the submission in the
// order the registry tag gives, with the examples as they are filled in. Each answers 2xx and the
// submission shows a dry run's plan of two items: a fresh install's first walk through the page
// ends in a plan, not in 422 UNKNOWN_TARGET_TYPE (what it did before the examples named a registry
// of their own). Nothing on the page fails to load (the security headers allow what it needs).
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { findChromium } from '../support/chromium.ts';
import { query } from '../support/seed.ts';

let t: TestApp;
let browser: Browser;
let base: string;
beforeAll(async () => {
  t = await buildTestApp();
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  browser = await chromium.launch({ executablePath: findChromium(), args: ['--no-sandbox'], headless: true });
});
afterAll(async () => {
  await browser?.close();
  await t?.close();
});

/** Expands a route, fills in its example (Try it out), executes it; returns the status and body shown. */
async function execute(page: Page, tag: string, operationId: string): Promise<{ status: number; body: string }> {
  const block = page.locator(`#operations-${tag}-${operationId}`);
  await block.locator('.opblock-summary').first().click();
  await block.locator('button.try-out__btn').click();
  await block.locator('button.execute').click();
  const status = block.locator('.live-responses-table .response .response-col_status').first();
  await status.waitFor({ timeout: 20_000 });
  const body = await block.locator('.live-responses-table .response-col_description pre').first().innerText();
  return { status: Number((await status.innerText()).trim()), body };
}

describe('Swagger UI in headless Chromium', () => {
  it('authorized with a token, the examples executed in order declare a registry and end in a dry-run plan', async () => {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console: ${m.text()}`);
    });
    await page.goto(`${base}/docs`);
    await page.locator('.opblock').first().waitFor({ timeout: 20_000 });

    await page.locator('button.authorize').first().click();
    await page.locator('.modal-ux input').first().fill(t.tokens.admin);
    await page.locator('.modal-ux button.authorize').click();
    await page.locator('.modal-ux button.btn-done').click();

    const steps: [string, string][] = [
      ['registry', 'putResourceTypes'],
      ['registry', 'upsertTenants'],
      ['registry', 'importResources'],
      ['operations', 'createOperation'],
    ];
    const shown: Record<string, { status: number; body: string }> = {};
    for (const [tag, id] of steps) shown[id] = await execute(page, tag, id);
    for (const [, id] of steps) expect(shown[id]!.status, `${id}: ${shown[id]!.body}`).toBe(200);
    expect(JSON.parse(shown.importResources!.body)).toMatchObject({ received: 3, inserted: 3 });
    expect(JSON.parse(shown.createOperation!.body)).toMatchObject({
      dryRun: true,
      plan: { itemCount: 2, tenantCount: 1 },
    });
    // Executed with the token given: the registry holds what the examples declared, and the dry
    // run stored no operation.
    const rows = await query(t.databaseUrl, `SELECT id FROM resources ORDER BY id`);
    expect(rows.map((r) => r.id)).toEqual(['example_app_9f2c1', 'example_app_9f2c2', 'example_site_k2m1']);
    expect(await query(t.databaseUrl, 'SELECT id FROM operations')).toEqual([]);
    expect(problems).toEqual([]);
    await page.close();
  });
});
