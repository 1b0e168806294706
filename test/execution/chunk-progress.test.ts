// A chunk holds up to 500 items. Against a slow downstream it runs for minutes, and its outcomes
// used to be recorded only when it ended: the view said "0 done" for 67 s while ~100 deletes had
// been made (a new-user trial, 700 ms per call). Outcomes that have landed are now recorded while
// the chunk's other calls are still out (at most once per progress interval), so the counts move
// as the deletes do, and decide() judges them as they come.
import request from 'supertest';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  buildExecHarness,
  getOperation,
  submitAndStart,
  until,
  useHttpAdapter,
  waitForState,
  type ExecHarness,
} from '../support/execution.ts';
import { appsOf, command, ledger, softDeletesOf } from '../support/exec-helpers.ts';
import { query, seedRegistry } from '../support/seed.ts';
import { startRestore } from '../support/restores.ts';

const ITEMS = 20;
/** Each delete answers this long after it arrives; one at a time: the chunk's calls take ~6 s. */
const DELETE_MS = 300;

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 1 });
  await seedRegistry(h.databaseUrl, { sites: 17, appsPerSite: 10, internalTenants: 1 });
  await useHttpAdapter(h);
});
afterAll(async () => {
  await h?.close();
});

/** Looks at the operation's ledger until it reaches `end`: what each look saw, in order. */
async function watchLedger(opId: string, end: string) {
  const seen: { done: number; claimed: number; restored: number }[] = [];
  const look = async () => {
    const rows = await ledger(h, opId);
    const count = (state: string) => rows.filter((r) => r.state === state).length;
    seen.push({ done: count('done'), claimed: count('claimed'), restored: count('restored') });
  };
  await until(
    async () => {
      await look();
      return (await getOperation(h, opId)).state === end;
    },
    `${opId} to be ${end}`,
    60_000,
  );
  // The last look may have read the ledger just before the commit that ended the operation.
  await look();
  return seen;
}

/** Some items read done while the chunk still held others, and all of them at the end. */
function expectDoneMidChunk(seen: { done: number; claimed: number }[], items: number) {
  expect(
    seen.some((x) => x.done > 0 && x.claimed > 0),
    JSON.stringify(seen),
  ).toBe(true);
  expect(seen.at(-1)!.done).toBe(items);
}

it('records the deletes of a slow chunk as they land, not only when the chunk ends', async () => {
  h.downstream.hang(DELETE_MS);
  try {
    // Sites 1 and 2 (site 0 is the internal tenant): one wave, one chunk of 20 items.
    const plan = await submitAndStart(h, {
      ids: appsOf([1, 2], 10),
      rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
    });
    expect(plan.waves.map((w) => w.items)).toEqual([ITEMS]);
    const seen: { done: number; claimed: number; sent: number }[] = [];
    await until(
      async () => {
        const op = await getOperation(h, plan.id);
        const rows = await ledger(h, plan.id);
        const done = op.waveProgress.reduce((n, w) => n + (w.counts.done ?? 0), 0);
        seen.push({
          done,
          claimed: rows.filter((r) => r.state === 'claimed').length,
          sent: softDeletesOf(h, rows).length,
        });
        return op.state === 'completed';
      },
      'the operation to complete',
      60_000,
    );
    // Some of the chunk's items read done while others were still claimed by it (its calls out).
    const midChunk = seen.filter((s) => s.done > 0 && s.claimed > 0);
    expect(midChunk.length, JSON.stringify(seen)).toBeGreaterThan(0);
    // And what reads done was sent: the counts never run ahead of the deletes.
    for (const s of seen) expect(s.done).toBeLessThanOrEqual(s.sent);
    expect(seen.at(-1)!.done).toBe(ITEMS);
  } finally {
    h.downstream.hang(0);
  }
});

it('records an item failed before any call (its snapshot could not be read) while the chunk still sends', async () => {
  // Sites 15 and 16: one chunk of 20 items; one of them cannot be read, so it is never sent.
  const ids = appsOf([15, 16], 10);
  const unreadable = ids[5]!;
  h.downstream.hang(DELETE_MS);
  h.downstream.failSnapshotsOf([unreadable], 404);
  try {
    const plan = await submitAndStart(h, {
      ids,
      rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
      haltPolicy: { probe: 'optional', maxFailureRate: 1 },
    });
    const seen: { failed: boolean; claimed: number }[] = [];
    await until(
      async () => {
        const rows = await ledger(h, plan.id);
        seen.push({
          failed: rows.find((r) => r.resource_id === unreadable)!.state === 'failed',
          claimed: rows.filter((r) => r.state === 'claimed').length,
        });
        return ['completed', 'completed_with_failures', 'halted', 'paused'].includes(
          (await getOperation(h, plan.id)).state,
        );
      },
      'the operation to end',
      60_000,
    );
    // Failed in the ledger while the chunk's other calls were still out, not only at its end.
    expect(
      seen.some((s) => s.failed && s.claimed > 0),
      JSON.stringify(seen),
    ).toBe(true);
    expect((await getOperation(h, plan.id)).state).toBe('completed_with_failures');
    expect(h.downstream.destructiveCalls().some((c) => c.resourceId === unreadable)).toBe(false);
  } finally {
    h.downstream.hang(0);
    h.downstream.failSnapshotsOf([]);
  }
});

it('shows a rollback against a slow downstream restoring item by item, not in one jump at its end', async () => {
  // Sites 3-6: 40 items, deleted at full speed, then rolled back while each restore takes 150 ms.
  const plan = await submitAndStart(h, {
    ids: appsOf([3, 4, 5, 6], 10),
    rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
  });
  await waitForState(h, plan.id, ['completed']);
  h.downstream.hang(150);
  try {
    const rolled = await command(h, 'operator', plan.id, 'rollback', { reason: 'slow restores' });
    expect(rolled.status, JSON.stringify(rolled.body)).toBe(200);
    const restored = (await watchLedger(plan.id, 'rolled_back')).map((x) => x.restored);
    // Some items read restored while others were still to be restored (a batch of all 40 never did).
    expect(
      restored.some((n) => n > 0 && n < 40),
      JSON.stringify(restored),
    ).toBe(true);
    expect(restored.at(-1)).toBe(40);
  } finally {
    h.downstream.hang(0);
  }
});

it('shows a restore operation against a slow downstream restoring as it goes, not at the end of its chunk', async () => {
  // Sites 7-10: 40 items deleted at full speed, then restored by a restore operation (one chunk).
  const deleted = await submitAndStart(h, {
    ids: appsOf([7, 8, 9, 10], 10),
    rollout: { bakeSeconds: 0, concurrency: 4, waves: ['100%'] },
  });
  await waitForState(h, deleted.id, ['completed']);
  h.downstream.hang(150);
  try {
    const restore = await startRestore(h, {
      operationId: deleted.id,
      rollout: { concurrency: 1, waves: ['100%'], bakeSeconds: 0 },
    });
    expectDoneMidChunk(await watchLedger(restore.id, 'completed'), 40);
  } finally {
    h.downstream.hang(0);
  }
});

it('shows a purge against a slow downstream purging as it goes, not at the end of its chunk', async () => {
  // Sites 11-14: 40 items deleted at full speed, made due, then purged while each call takes 150 ms.
  const ids = appsOf([11, 12, 13, 14], 10);
  const deleted = await submitAndStart(h, { ids, rollout: { bakeSeconds: 0, concurrency: 4, waves: ['100%'] } });
  await waitForState(h, deleted.id, ['completed']);
  await query(h.databaseUrl, `UPDATE resources SET purge_after = now() - interval '1 day' WHERE id = ANY($1)`, [ids]);
  h.downstream.hang(150);
  try {
    const planned = await request(h.app.server)
      .post('/v1/purges')
      .set('authorization', h.auth('requester'))
      .send({
        reason: 'Retention ended',
        ticket: 'CHG-2',
        targetType: 'app',
        ids,
        rollout: { bakeSeconds: 0, concurrency: 1, waves: ['100%'] },
      });
    expect(planned.status, JSON.stringify(planned.body)).toBe(201);
    const op = planned.body as { id: string; planHash: string };
    await command(h, 'approver', op.id, 'approve', { planHash: op.planHash }).expect(200);
    await command(h, 'operator', op.id, 'start').expect(200);
    expectDoneMidChunk(await watchLedger(op.id, 'completed'), 40);
  } finally {
    h.downstream.hang(0);
  }
});
