// The lifecycle rules of a purge (kind purge): it is never rolled back (nothing can be restored
// after a hard delete), so rollback is refused exactly like a restore's, a halt waits for a human
// whatever onHalt says, and an abort ends it (cancelled, which never reads as success).
import { describe, expect, it } from 'vitest';
import {
  decide,
  type LifecycleEvent,
  type LifecycleState,
  type OpState,
} from '../../src/modules/operations/lifecycle.ts';
import { at, ev, fx, HALT_PAUSE, HALT_ROLLBACK, NOW, stats } from './lifecycle.fixtures.ts';

const purgeAt = (state: OpState, over: Partial<LifecycleState> = {}) => at(state, { kind: 'purge', ...over });
const ok = (s: LifecycleState, e: LifecycleEvent) => {
  const d = decide(s, e, NOW);
  if (!d.ok) throw new Error(`refused: ${d.code} ${d.message}`);
  return d;
};

describe('a purge is never rolled back', () => {
  it.each(['running', 'baking', 'paused', 'halted', 'completed', 'completed_with_failures'] as const)(
    'rollback from %s → 409 ROLLBACK_NOT_SUPPORTED (a delete in the same state may roll back)',
    (state) => {
      expect(decide(purgeAt(state), ev.rollback(), NOW)).toMatchObject({
        ok: false,
        status: 409,
        code: 'ROLLBACK_NOT_SUPPORTED',
        message: expect.stringMatching(/cannot be restored/),
      });
      expect(decide(at(state), ev.rollback(), NOW).ok).toBe(true);
    },
  );

  it.each<[string, LifecycleState, LifecycleEvent]>([
    ['a signal', purgeAt('running'), ev.signal('t1')],
    ['an unhealthy wave', purgeAt('running'), ev.outcomes(1, stats(0, 5, 5, 10))],
    ['a stall', purgeAt('running', { progressAt: NOW - 901_000 }), ev.timer()],
    ['a missed deadline', purgeAt('running', { waveDeadline: NOW - 1 }), ev.timer()],
  ])('%s halts it to wait (pause), even with onHalt rollback', (_, s, e) => {
    expect(s.haltPolicy.onHalt).toBe('rollback');
    const d = ok(s, e);
    expect(d.next.state).toBe('halted');
    expect(fx(d.effects)).toEqual(HALT_PAUSE);
    expect(fx(ok({ ...s, kind: 'delete' }, e).effects)).toEqual(HALT_ROLLBACK);
  });

  it.each(['running', 'baking', 'paused', 'halted'] as const)(
    'abort from %s ends it cancelled, saying why',
    (state) => {
      const d = ok(purgeAt(state), ev.abort());
      expect(d.next).toMatchObject({ state: 'cancelled', haltReason: expect.stringMatching(/^purge aborted by /) });
      expect(fx(d.effects)).toEqual(['stop_execution', 'audit']);
    },
  );

  it('an ended purge refuses everything (no "only a rollback is possible")', () => {
    for (const e of [ev.resume(), ev.start()]) {
      const d = decide(purgeAt('completed'), e, NOW);
      expect(d).toMatchObject({ ok: false, code: 'INVALID_TRANSITION' });
      expect(d.ok ? '' : d.message).not.toMatch(/rollback/);
    }
  });

  it('the requester cannot approve their own purge', () => {
    const s = purgeAt('planned');
    expect(decide(s, ev.approve(s.requestedBy), NOW)).toMatchObject({ ok: false, status: 403 });
  });
});
