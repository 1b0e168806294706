// Transition frames are history: each carries its own state, reason and bake, never the
// operation's present ones (a watch that caught up printed a first pause with a later one's reason).
import { describe, expect, it } from 'vitest';
import { transitionData } from '../../src/modules/events/frames.ts';
import type { Transition } from '../../src/modules/events/feed.ts';

const t = (over: Partial<Transition>): Transition => ({
  seq: 7,
  at: '2026-12-02T07:58:25.601Z',
  action: 'operation.paused',
  actor: 'operator-1',
  outcome: 'accepted',
  from: 'running',
  to: 'paused',
  wave: 1,
  detail: { reason: 'checking something' },
  ...over,
});

describe('transitionData', () => {
  it("carries the event's own state and reason", () => {
    expect(transitionData(t({}))).toMatchObject({ state: 'paused', haltReason: 'checking something', bakeUntil: null });
  });

  it('an event that moved nothing has no state, and one without a reason has none', () => {
    expect(transitionData(t({ action: 'operation.planned', from: null, to: null, detail: {} }))).toMatchObject({
      state: null,
      haltReason: null,
    });
  });

  it('a start or resume with a reason is no halt: haltReason null, as the operation has none then', () => {
    for (const [action, from] of [
      ['operation.started', 'approved'],
      ['operation.resumed', 'paused'],
    ] as const)
      expect(
        transitionData(t({ action, from, to: 'running', detail: { reason: 'Change window open' } })),
        action,
      ).toMatchObject({ state: 'running', haltReason: null });
  });

  it("an operator's rollback of a halted operation: the haltReason it led to, which keeps the halt's cause", () => {
    const haltReason = 'rollback by sre-operator: downstream fixed (halted: wave 4 of 5: 5 consecutive item failures)';
    const detail = { reason: 'downstream fixed', haltReason };
    expect(
      transitionData(t({ action: 'operation.rollback_started', from: 'halted', to: 'rolling_back', detail })),
    ).toMatchObject({ state: 'rolling_back', haltReason });
  });
});
