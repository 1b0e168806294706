// A rollback's counts come from the wave counters and the moves its statements record
// (execution/wave-moves.ts), not from counting the ledger per view: a rollback command of a 1M-item
// operation answered in 1.2–2.1 s while its view counted the ledger. These tests hold the counts to
// the ledger through restores that succeed, fail for good, fail and are retried, and a rollback
// tried again; the harness checks the same invariant for every operation of every file at close.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readLive } from '../../src/modules/events/feed.ts';
import { RESTORE_ATTEMPTS } from '../../src/modules/execution/rollback-ledger.ts';
import {
  countsFromMoves,
  MOVE_CLASSES,
  shownClass,
  shownClassSql,
  type MoveClass,
} from '../../src/modules/execution/wave-moves.ts';
import { appsOf, command, isDrillCall, range } from '../support/exec-helpers.ts';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { query, seedRegistry } from '../support/seed.ts';
import { waveMoveMismatches } from '../support/wave-moves.ts';

const APPS = 4;
const ROLLOUT = { bakeSeconds: 0, concurrency: 4, waves: ['10%', '50%', '100%'], restoreDrill: false };
type Progress = { wave: number; counts: Record<string, number> }[];

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 40, appsPerSite: APPS, internalTenants: 2 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});

/** The per-wave counts as the ledger gives them (the view's rule: shownState), in the view's shape. */
async function ledgerProgress(opId: string, rollbackRuns: boolean): Promise<Progress> {
  const rows = await query<{ wave: number; state: string; n: number }>(
    h.databaseUrl,
    `SELECT wave, CASE WHEN state = 'restore_failed' AND $2 AND NOT permanent AND restore_attempts < $3
                  THEN 'restoring' WHEN state = 'claimed' THEN 'pending' ELSE state END AS state, count(*)::int AS n
     FROM operation_items WHERE operation_id = $1 GROUP BY 1, 2 ORDER BY 1, 2`,
    [opId, rollbackRuns, RESTORE_ATTEMPTS],
  );
  const byWave = new Map<number, Record<string, number>>();
  for (const r of rows) byWave.set(r.wave, { ...byWave.get(r.wave), [r.state]: r.n });
  return [...byWave.entries()].map(([wave, counts]) => ({ wave, counts }));
}
/**
 * The migrations' backfills (the moves of operations in a rollback state, then the holds of restore
 * drills) reproduce, from the ledger alone, exactly the moves the statements recorded. Run in a
 * transaction undone after; returns the recorded moves.
 */
async function expectBackfillReproduces() {
  const client = new pg.Client({ connectionString: h.databaseUrl });
  await client.connect();
  const sql = (f: string) => readFileSync(resolve(import.meta.dirname, `../../prisma/sql/${f}`), 'utf8');
  try {
    const movesSql = `SELECT operation_id, wave, class, n FROM operation_wave_moves WHERE n <> 0 ORDER BY 1, 2, 3`;
    const recorded = (await client.query(movesSql)).rows;
    // As before the migrations: no moves at all.
    await client.query('BEGIN');
    await client.query('DELETE FROM operation_wave_moves');
    await client.query(sql('wave_moves_backfill.sql'));
    await client.query(sql('wave_moves_drill_holds.sql'));
    expect((await client.query(movesSql)).rows).toEqual(recorded);
    return recorded;
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end();
  }
}
const stateOf = async (opId: string) =>
  (await query<{ state: string }>(h.databaseUrl, 'SELECT state FROM operations WHERE id = $1', [opId]))[0]!.state;

describe('counts of a rollback from the wave moves', () => {
  it('match the ledger in every wave while restores succeed, fail for good and are retried, and after', async () => {
    const ids = appsOf(range(10, 22), APPS); // 48 items in 3 waves
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT });
    await waitForState(h, plan.id, ['completed']);
    // Two refused for good (a 4xx), three failing a whole attempt with a 503 (its 3 calls: retries 2),
    // tried again after the backoff.
    const refused = new Set([ids[0]!, ids[30]!]);
    const flaky = new Map([ids[5]!, ids[20]!, ids[40]!].map((id) => [id, 3]));
    h.downstream.answer((c) => {
      if (c.action !== 'restore' || !c.resourceId) return null;
      if (refused.has(c.resourceId)) return 422;
      const left = flaky.get(c.resourceId) ?? 0;
      if (left === 0) return null;
      flaky.set(c.resourceId, left - 1);
      return 503;
    });
    try {
      await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
      // While it runs, in one statement each time: the counters plus moves equal the ledger.
      let sawRetry = false;
      while ((await stateOf(plan.id)) === 'rolling_back') {
        expect(await waveMoveMismatches(h.databaseUrl, plan.id)).toEqual([]);
        const r = await query<{ n: number }>(
          h.databaseUrl,
          `SELECT count(*)::int AS n FROM operation_wave_moves WHERE operation_id = $1 AND class = 'restore_retry' AND n > 0`,
          [plan.id],
        );
        sawRetry ||= r[0]!.n > 0;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(sawRetry).toBe(true);
    } finally {
      h.downstream.answer(null);
    }
    const ended = await getOperation(h, plan.id);
    expect(ended.state).toBe('rollback_incomplete');
    expect(ended.waveProgress).toEqual(await ledgerProgress(plan.id, false));
    const total = (k: string) => ended.waveProgress.reduce((n, w) => n + (w.counts[k] ?? 0), 0);
    expect([total('restored'), total('restore_failed')]).toEqual([ids.length - 2, 2]);
    const live = await readLive(h.app.db.pool, plan.id, h.app.queueHolds);
    expect(live!.waves.map((w) => [w.restored, w.restoreFailed])).toEqual(
      ended.waveProgress.map((w) => [w.counts.restored ?? 0, w.counts.restore_failed ?? 0]),
    );
    // Tried again with the downstream fixed: the failures get fresh attempts (moved back to retry)
    // and are restored.
    await command(h, 'operator', plan.id, 'rollback', { reason: 'the 4xx was fixed' }).expect(200);
    const again = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete']);
    expect(again.state).toBe('rolled_back');
    expect(again.waveProgress).toEqual(await ledgerProgress(plan.id, false));
    expect(again.waveProgress.reduce((n, w) => n + (w.counts.restored ?? 0), 0)).toBe(ids.length);
    expect(await waveMoveMismatches(h.databaseUrl, plan.id)).toEqual([]);
  }, 90_000);

  it('are not read from the ledger: a view of a rollback never viewed before shows the counted moves', async () => {
    const ids = appsOf(range(30, 33), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT });
    await waitForState(h, plan.id, ['completed']);
    await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
    // Waited for in the database: no view is read (or kept by a memo) before the ledger changes.
    await until(async () => (await stateOf(plan.id)) === 'rolled_back', 'the rollback to end', 30_000);
    // One item changed behind the counters' back; a view that counted the ledger would show it.
    const [item] = await query<{ seq: number }>(
      h.databaseUrl,
      `UPDATE operation_items SET state = 'done' WHERE operation_id = $1
         AND seq = (SELECT min(seq) FROM operation_items WHERE operation_id = $1) RETURNING seq`,
      [plan.id],
    );
    try {
      const view = await getOperation(h, plan.id);
      expect(view.waveProgress.reduce((n, w) => n + (w.counts.restored ?? 0), 0)).toBe(ids.length);
      expect(view.waveProgress.some((w) => w.counts.done)).toBe(false);
    } finally {
      await query(h.databaseUrl, `UPDATE operation_items SET state = 'restored' WHERE operation_id = $1 AND seq = $2`, [
        plan.id,
        item!.seq,
      ]);
    }
  });
});

describe('a restore drill holding its item when a rollback begins', () => {
  it('the held item reads as restoring in the view, as in the ledger, until the drill gives it back', async () => {
    const ids = appsOf(range(37, 40), APPS);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let held = false;
    h.downstream.beforeApply(async (c) => {
      if (c.action === 'restore' && isDrillCall(c)) {
        held = true;
        await gate;
      }
    });
    try {
      const plan = await submitAndStart(h, {
        ids,
        rollout: { ...ROLLOUT, waves: ['2', '100%'], restoreDrill: true },
      });
      await until(async () => held, 'the drill to send its restore', 30_000);
      // Before any rollback too, the view says what the ledger says (the list summary does).
      const running = await getOperation(h, plan.id);
      expect(running.state).toBe('running');
      expect(running.waveProgress[0]).toEqual((await ledgerProgress(plan.id, false))[0]);
      expect(running.waveProgress[0]!.counts.restoring).toBe(1);
      await command(h, 'operator', plan.id, 'rollback', { reason: 'undo during the drill' }).expect(200);
      // The rollback restores wave 0's other items; the drilled one stays held by the drill (the next
      // wave waits for the drill, so nothing else was deleted).
      const wave0 = () =>
        query<{ state: string; claimed_by: string | null }>(
          h.databaseUrl,
          'SELECT state, claimed_by FROM operation_items WHERE operation_id = $1 AND wave = 0 ORDER BY seq',
          [plan.id],
        );
      const others = (await wave0()).length - 1;
      await until(
        async () => (await wave0()).filter((i) => i.state === 'restored').length === others,
        "the rollback to restore wave 0's other items",
        30_000,
      );
      expect((await wave0()).filter((i) => i.state === 'restoring')).toEqual([
        { state: 'restoring', claimed_by: 'drill' },
      ]);
      const during = await getOperation(h, plan.id);
      expect(during.waveProgress[0]).toEqual({ wave: 0, counts: { restoring: 1, restored: others } });
      expect(await waveMoveMismatches(h.databaseUrl, plan.id)).toEqual([]);
      await expectBackfillReproduces();
      release();
      const ended = await waitForState(h, plan.id, ['rolled_back', 'rollback_incomplete']);
      expect(ended.state).toBe('rolled_back');
      expect(ended.waveProgress).toEqual(await ledgerProgress(plan.id, false));
      // The drill gave its item back deleted, and the rollback restored it with the rest of wave 0
      // (the next wave never ran).
      expect(ended.waveProgress[0]).toEqual({ wave: 0, counts: { restored: others + 1 } });
      // The drill ended during the rollback: it decided nothing, and is in the audit log.
      const audited = await query<{ payload: Record<string, unknown> }>(
        h.databaseUrl,
        `SELECT payload FROM audit_events WHERE operation_id = $1 AND action = 'operation.drill'`,
        [plan.id],
      );
      expect(audited.map((a) => a.payload)).toEqual([
        expect.objectContaining({ outcome: 'ok', from: 'rolling_back', to: 'rolling_back', wave: 0, late: true }),
      ]);
      expect(await waveMoveMismatches(h.databaseUrl, plan.id)).toEqual([]);
    } finally {
      release();
      h.downstream.beforeApply(undefined);
    }
  }, 90_000);
});

describe('the migration that made the moves', () => {
  it('backfills them from the ledger for operations already in a rollback state', async () => {
    const ids = appsOf(range(34, 37), APPS);
    const plan = await submitAndStart(h, { ids, rollout: ROLLOUT });
    await waitForState(h, plan.id, ['completed']);
    h.downstream.answer((c) => (c.action === 'restore' && c.resourceId === ids[3] ? 422 : null));
    try {
      await command(h, 'operator', plan.id, 'rollback', { reason: 'undo' }).expect(200);
      await until(async () => (await stateOf(plan.id)) === 'rollback_incomplete', 'the rollback to end', 30_000);
    } finally {
      h.downstream.answer(null);
    }
    const recorded = await expectBackfillReproduces();
    expect(recorded.filter((m) => m.operation_id === plan.id && m.class === 'restore_failed')).toEqual([
      { operation_id: plan.id, wave: expect.any(Number), class: 'restore_failed', n: 1 },
    ]);
  });
});

describe('countsFromMoves', () => {
  const waves = [
    { wave: 0, items: 10, done: 8, failed: 2 },
    { wave: 1, items: 5, done: 0, failed: 0 },
  ];
  const mv = (cls: MoveClass, n: number, wave = 0) => ({ wave, class: cls, n });
  const later = { wave: 1, counts: { pending: 5 } };
  const retried = [mv('done', -3), mv('restore_retry', 1), mv('restore_failed', 1), mv('restored', 1)];
  it.each([
    ['no moves: the forward counts', [], true, { done: 8, failed: 2 }],
    [
      'restores under way',
      [mv('done', -5), mv('restoring', 2), mv('restored', 3)],
      true,
      { done: 3, failed: 2, restoring: 2, restored: 3 },
    ],
    [
      'a failed restore to be retried reads as restoring while the rollback runs',
      retried,
      true,
      { done: 5, failed: 2, restoring: 1, restore_failed: 1, restored: 1 },
    ],
    ['… and as restore_failed once it ended', retried, false, { done: 5, failed: 2, restore_failed: 2, restored: 1 }],
    ['failed deletes restored: out of failed', [mv('failed', -2), mv('restored', 2)], false, { done: 8, restored: 2 }],
  ])('%s', (_name, moves, runs, counts) => {
    expect(countsFromMoves(waves, moves, runs)).toEqual([{ wave: 0, counts }, later]);
  });
  it('keeps each wave to its own moves', () => {
    expect(countsFromMoves(waves, [mv('pending', -1, 1), mv('restored', 1, 1)], true)).toEqual([
      { wave: 0, counts: { done: 8, failed: 2 } },
      { wave: 1, counts: { pending: 4, restored: 1 } },
    ]);
  });
});

describe('shownClass', () => {
  it('restore_retry reads restoring while the rollback runs and restore_failed after; every other class as it is', () => {
    expect(MOVE_CLASSES.map((c) => [c, shownClass(c, true), shownClass(c, false)])).toEqual([
      ['pending', 'pending', 'pending'],
      ['done', 'done', 'done'],
      ['failed', 'failed', 'failed'],
      ['restoring', 'restoring', 'restoring'],
      ['restore_retry', 'restoring', 'restore_failed'],
      ['restored', 'restored', 'restored'],
      ['restore_failed', 'restore_failed', 'restore_failed'],
    ]);
  });
  it('is the same rule in SQL (the operation list counts with it) for every class, rollback running or not', async () => {
    const rows = await query<{ class: MoveClass; runs: boolean; shown: string }>(
      h.databaseUrl,
      `SELECT c AS class, r AS runs, ${shownClassSql('c', 'r')} AS shown
       FROM unnest($1::text[]) c CROSS JOIN unnest(ARRAY[true, false]) r`,
      [[...MOVE_CLASSES]],
    );
    expect(rows).toHaveLength(MOVE_CLASSES.length * 2);
    for (const row of rows)
      expect([row.class, row.runs, row.shown]).toEqual([row.class, row.runs, shownClass(row.class, row.runs)]);
  });
});
