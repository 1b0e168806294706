// What a rollback writes on its operation for the views (`waiting: restore_retry`) when it goes to
// sleep, or after a batch that restored nothing: how many failed restores it will try again. A
// trial against a downstream that hangs saw `items` 5–16 while 170+ failed restores waited: only
// those whose retry was not due yet were counted, and against a hang most are due long before the
// rollback gets to them (it sends untried items first, and each batch waits out its timeouts).
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pgRollbackLedger, RESTORE_ATTEMPTS } from '../../src/modules/execution/rollback-ledger.ts';
import { createTestDatabase } from '../support/db.ts';

const OP = 'op_restore_wait_count';
let db: pg.Pool;
beforeAll(async () => {
  db = new pg.Pool({ connectionString: await createTestDatabase(), max: 2 });
  await db.query(
    `INSERT INTO operations (id, action, target_type, mode, reason, ticket, state, requested_by, requested_by_name,
       request_hash, rollout, halt_policy)
     VALUES ($1, 'delete', 'app', 'soft', 'r', 't', 'rolling_back', 'tok', 'n', 'h', '{}', '{}')`,
    [OP],
  );
});
afterAll(async () => {
  await db?.end();
});

/** Items of OP, executed, in one state: `n` of them from seq `from`. */
async function items(from: number, n: number, set: string) {
  await db.query(
    `INSERT INTO operation_items (operation_id, seq, resource_id, tenant_id, ordinal, wave, executed_seq)
     SELECT $1, s, 'app_' || s, 't_1', s, 0, s FROM generate_series($2::int, $2::int + $3::int - 1) s`,
    [OP, from, n],
  );
  await db.query(`UPDATE operation_items SET ${set} WHERE operation_id = $1 AND seq >= $2 AND seq < $2 + $3`, [
    OP,
    from,
    n,
  ]);
}

describe("a rollback's note of the restores it will try again", () => {
  it('counts every failed restore with attempts left, due or not; the next retry is the first not yet due', async () => {
    const failed = `state = 'restore_failed', last_error = 'HTTP 503', permanent = false`;
    // Due already (their backoff ended while the batch before waited out its timeouts).
    await items(0, 170, `${failed}, restore_attempts = 1, next_attempt_at = now() - interval '20 seconds'`);
    // Not due yet: the next retry is the first of these.
    await items(170, 6, `${failed}, restore_attempts = 2, next_attempt_at = now() + interval '30 seconds'`);
    // Not counted: handed back unsent by a batch (never tried: no attempt used), final failures, restored.
    await items(176, 50, `${failed}, restore_attempts = 0, next_attempt_at = NULL`);
    await items(226, 3, `state = 'restore_failed', permanent = true, restore_attempts = 1`);
    await items(229, 2, `${failed}, restore_attempts = ${RESTORE_ATTEMPTS}, next_attempt_at = NULL`);
    await items(231, 10, `state = 'restored'`);

    const wake = await pgRollbackLedger(db, 90_000).nextWake(OP, 'timeout after 1000 ms');
    const note = (
      await db.query<{ w: Record<string, unknown> }>('SELECT restore_wait AS w FROM operations WHERE id = $1', [OP])
    ).rows[0]!.w;
    const due = (
      await db.query<{ at: Date }>(
        `SELECT min(next_attempt_at) AS at FROM operation_items WHERE operation_id = $1 AND next_attempt_at > now()`,
        [OP],
      )
    ).rows[0]!.at;
    expect(note).toMatchObject({ items: 176, lastError: 'timeout after 1000 ms' });
    expect(Date.parse(note.nextRetryAt as string)).toBe(due.getTime());
    // The rollback wakes for the first retry not yet due, as before: the due ones it picks at once.
    expect(wake).toBe(due.getTime());
  });
});
