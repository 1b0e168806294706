// Staged uploads leave nothing behind: a request's staging table is dropped however it ends
// (planned, rejected, dry run, invalid IDs, a body that turns bad half-way), and the table of an API killed mid-upload
// is dropped by the sweeper of any app on the database once it is older than a request can live.
import request from 'supertest';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStagingTable, newStagingTable, sweepStaleStaging } from '../../src/modules/operations/staging.ts';
import { startApiChild } from '../support/api-child.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { until } from '../support/execution.ts';
import { appId, query, seedRegistry, siteId } from '../support/seed.ts';
import { trickleUpload } from '../support/uploads.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 60, appsPerSite: 4 });
});
afterAll(async () => {
  await t?.close();
});

const stagingTables = async () =>
  (
    await query<{ name: string }>(
      t.databaseUrl,
      `SELECT tablename AS name FROM pg_tables WHERE schemaname = 'upload_staging' ORDER BY 1`,
    )
  ).map((r) => r.name);
const submit = (body: Record<string, unknown>) =>
  request(t.app.server)
    .post('/v1/operations')
    .set('authorization', t.auth('requester'))
    .send({ targetType: 'app', reason: 'Remove the legacy app', ticket: 'CHG-STAGE', ...body });

describe('every request drops its staging table', () => {
  const cases: [string, () => Promise<request.Response>, number][] = [
    ['planned', () => submit({ ids: [appId(1, 0), appId(1, 1)] }), 201],
    ['rejected with a report', () => submit({ ids: [appId(2, 0), siteId(2)] }), 422],
    ['dry run', () => submit({ ids: [appId(3, 0)], dryRun: true }), 200],
    ['invalid IDs', () => submit({ ids: [appId(4, 0), 'bad id'] }), 400],
    [
      'a malformed NDJSON line after a batch was staged',
      () =>
        request(t.app.server)
          .post('/v1/operations')
          .set('authorization', t.auth('requester'))
          .set('content-type', 'application/x-ndjson')
          .send(
            `${JSON.stringify({ targetType: 'app', reason: 'cleanup', ticket: 'CHG-ND' })}\n` +
              Array.from({ length: 10_001 }, (_, i) => `"app_${i}"\n`).join('') +
              '{oops\n',
          ),
      400,
    ],
    [
      'NDJSON planned',
      () =>
        request(t.app.server)
          .post('/v1/operations')
          .set('authorization', t.auth('requester'))
          .set('content-type', 'application/x-ndjson')
          .send(
            `${JSON.stringify({ targetType: 'app', reason: 'cleanup', ticket: 'CHG-ND' })}\n` +
              Array.from({ length: 4 }, (_, j) => `"${appId(5, j)}"`).join('\n'),
          ),
      201,
    ],
  ];
  for (const [what, send, status] of cases) {
    it(what, async () => {
      const res = await send();
      expect(res.status, JSON.stringify(res.body).slice(0, 500)).toBe(status);
      expect(await stagingTables()).toEqual([]);
    });
  }
});

describe('after a crash', () => {
  it('an API killed mid-upload leaves its staging table; a sweeper drops it once stale, never a young one', async () => {
    const api = await startApiChild({
      databaseUrl: t.databaseUrl,
      redisUrl: t.redisUrl,
      queuePrefix: `bgt_crash_${Date.now().toString(36)}`,
      adminToken: t.tokens.admin,
      // Not a load-shedding test: on a loaded CI machine the child's start can lag its event loop
      // past the 500 ms bound, and it then sheds every upload for a while (503 OVERLOADED).
      env: { BLASTGATE_MAX_EVENT_LOOP_DELAY_MS: '0', BLASTGATE_MAX_EVENT_LOOP_UTILIZATION: '0' },
    });
    const start = () =>
      trickleUpload({
        port: api.port,
        token: t.tokens.requester,
        burst: Array.from({ length: 10_001 }, (_, i) => appId(10 + (i % 50), i % 4)),
        everyMs: 100,
      });
    let upload = start();
    // An answer before the kill is a refusal: on a loaded machine the child may shed the upload
    // (503 OVERLOADED while it starts), and the test then waited out its minute for a table that
    // would never come (a CI run). Sent again, bounded, as a client does after a 503.
    let answered: number | null = null;
    const answers: string[] = [];
    let resent = 0;
    let staged = -1;
    const watchAnswer = (u: typeof upload) =>
      void u.response.then((r) => {
        answered = r.status;
        answers.push(`${r.status} ${r.body.slice(0, 200)}`);
      });
    watchAnswer(upload);
    let orphan = '';
    let resendAt = 0;
    try {
      await until(
        async () => {
          // Sent again after a pause, as a client does after a 503, at most 5 times.
          if (answered === 503 && resent < 5 && Date.now() >= resendAt) {
            resent++;
            answered = null;
            resendAt = Date.now() + 1_000;
            upload = start();
            watchAnswer(upload);
          }
          if (answered !== null && answered !== 503) throw new Error(`the upload was answered ${answers.join('; ')}`);
          const [name] = await stagingTables();
          if (!name) return false;
          const [rows] = await query<{ n: number }>(
            t.databaseUrl,
            `SELECT count(*)::int AS n FROM upload_staging."${name}"`,
          );
          orphan = name;
          staged = rows!.n;
          return rows!.n >= 10_000;
          // Generous: on a loaded 2-core machine the child API's start and first COPY batches are slow.
        },
        'the upload to be staged',
        60_000,
      ).catch((err: Error) => {
        // Say what was seen: the answers, the rows staged, the child's last log lines.
        throw new Error(
          `${err.message}: staged ${staged} row(s) in ${orphan || 'no table'}, sent ${resent + 1} time(s), ` +
            `answers [${answers.join('; ')}]; API log:\n${api.output().slice(-2_000)}`,
        );
      });
    } finally {
      await api.kill();
      upload.stop();
    }
    expect(await stagingTables()).toEqual([orphan]);
    expect(await query(t.databaseUrl, `SELECT id FROM operations WHERE ticket = 'CHG-SLOW'`)).toEqual([]);

    // A young table (a live upload, maybe of another replica) survives a sweep.
    const pool = new pg.Pool({ connectionString: t.databaseUrl, max: 2 });
    const young = newStagingTable();
    try {
      await createStagingTable(pool, young);
      expect(await sweepStaleStaging(pool, 60_000)).toEqual([]);
    } finally {
      await pool.query(`DROP TABLE IF EXISTS ${young.sql}`);
      await pool.end();
    }
    expect(await stagingTables()).toEqual([orphan]);

    // An app whose requests live at most 2 s drops what is older than 4 s, sweeping every second.
    const sweeper = await buildTestApp({
      databaseUrl: t.databaseUrl,
      limits: { requestTimeoutMs: 1_000, handlerTimeoutMs: 2_000 },
    });
    try {
      await until(async () => (await stagingTables()).length === 0, 'the sweeper to drop it', 20_000);
    } finally {
      await sweeper.close();
    }
  }, 120_000);
});
