// The lifecycle rules of a restore (kind restore): it is never rolled back (that would delete again
// what it restored), so a halt waits for a human whatever onHalt says, and an abort ends it
// (cancelled, which never reads as success). auto_start starts an approved operation that asked to
// start by itself (a restore the policy lets run unapproved).
import { describe, expect, it } from 'vitest';
import {
  decide,
  type LifecycleEvent,
  type LifecycleState,
  type OpState,
} from '../../src/modules/operations/lifecycle.ts';
import { at, ev, fx, HALT_PAUSE, HALT_ROLLBACK, makeState, NOW, stats } from './lifecycle.fixtures.ts';

const restoreAt = (state: OpState, over: Partial<LifecycleState> = {}) => at(state, { kind: 'restore', ...over });
const ok = (s: LifecycleState, e: LifecycleEvent) => {
  const d = decide(s, e, NOW);
  if (!d.ok) throw new Error(`refused: ${d.code} ${d.message}`);
  return d;
};

describe('a restore is never rolled back', () => {
  it.each(['running', 'baking', 'paused', 'halted', 'completed', 'completed_with_failures'] as const)(
    'rollback from %s → 409 ROLLBACK_NOT_SUPPORTED',
    (state) => {
      expect(decide(restoreAt(state), ev.rollback(), NOW)).toMatchObject({
        ok: false,
        status: 409,
        code: 'ROLLBACK_NOT_SUPPORTED',
        message: expect.stringMatching(/delete again what it restored/),
      });
      // A delete in the same state may be rolled back.
      expect(decide(at(state), ev.rollback(), NOW).ok).toBe(true);
    },
  );

  it.each<[string, LifecycleState, LifecycleEvent]>([
    ['a signal', restoreAt('running'), ev.signal('t1')],
    ['an unhealthy wave', restoreAt('running'), ev.outcomes(1, stats(0, 5, 5, 10))],
    ['a stall', restoreAt('running', { progressAt: NOW - 901_000 }), ev.timer()],
    ['a missed deadline', restoreAt('running', { waveDeadline: NOW - 1 }), ev.timer()],
  ])('%s halts it to wait, even with onHalt rollback', (_, s, e) => {
    expect(s.haltPolicy.onHalt).toBe('rollback');
    const d = ok(s, e);
    expect(d.next.state).toBe('halted');
    expect(fx(d.effects)).toEqual(HALT_PAUSE);
    expect(d.effects.find((x) => x.type === 'audit')).toMatchObject({ detail: { onHalt: 'pause' } });
    // The same event on a delete rolls back.
    expect(fx(ok({ ...s, kind: 'delete' }, e).effects)).toEqual(HALT_ROLLBACK);
  });

  it.each(['running', 'baking', 'paused', 'halted'] as const)(
    'abort from %s ends it cancelled, saying why',
    (state) => {
      const d = ok(restoreAt(state), ev.abort());
      expect(d.next).toMatchObject({
        state: 'cancelled',
        haltReason: 'restore aborted by oncall-operator: wrong list',
      });
      expect(fx(d.effects)).toEqual(['stop_execution', 'audit']);
      expect(d.effects[1]).toMatchObject({ action: 'operation.cancelled', detail: { started: true } });
    },
  );

  it('cancelled refuses everything after (no way back into running)', () => {
    for (const e of [ev.resume(), ev.rollback(), ev.autoStart(), ev.start()])
      expect(decide(restoreAt('cancelled'), e, NOW)).toMatchObject({ ok: false, code: 'INVALID_TRANSITION' });
  });
});

describe('auto_start', () => {
  it('starts an approved operation that asked for it, with the freshness guard', () => {
    const d = ok(makeState({ state: 'approved', kind: 'restore', autoStart: true }), ev.autoStart());
    expect(d.next.state).toBe('running');
    expect(fx(d.effects)).toEqual(['audit', 'enqueue_wave:0']);
    expect(d.guards).toEqual(['plan_fresh']);
  });

  it.each<[string, LifecycleState, string]>([
    ['planned (not approved)', makeState({ kind: 'restore', autoStart: true }), 'INVALID_TRANSITION'],
    ['approved without autoStart', makeState({ state: 'approved', kind: 'restore' }), 'INVALID_TRANSITION'],
    ['frozen', makeState({ state: 'approved', autoStart: true, frozen: true }), 'FROZEN'],
    ['expired', makeState({ state: 'approved', autoStart: true, expiresAt: NOW - 1 }), 'OPERATION_EXPIRED'],
  ])('refused when %s', (_, s, code) => {
    expect(decide(s, ev.autoStart(), NOW)).toMatchObject({ ok: false, code });
  });
});
