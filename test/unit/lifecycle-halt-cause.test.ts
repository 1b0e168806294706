// Why an operation stopped stays readable after what was done about it. An operation halted itself
// ("wave 4 of 5: 5 consecutive item failures …"); its rollback could not restore everything; the
// operator fixed the downstream and rolled back again. The haltReason, which the API view, the CLI,
// the live view and the webhooks all show, then said only "rollback by sre-operator: downstream
// fixed, retry rollback" (or "16 item(s) could not be restored"): the cause was left only in the
// audit timeline (a new-user trial). The first reason it stopped is kept (haltCause) and every later
// reason says it too, once, however many steps follow.
import { describe, expect, it } from 'vitest';
import { decide, type LifecycleEvent, type LifecycleState } from '../../src/modules/operations/lifecycle.ts';
import { DEFAULT_HALT } from '../../src/modules/operations/policy.ts';
import { at, ev, NOW, stats } from './lifecycle.fixtures.ts';

const CAUSE = 'wave 2 of 3: 5 consecutive item failures (limit 5); last error: HTTP 500 Internal Server Error';
const pausePolicy = { haltPolicy: { ...DEFAULT_HALT, onHalt: 'pause' as const } };
const halted = (over: Partial<LifecycleState> = {}) =>
  at('halted', { ...pausePolicy, haltReason: CAUSE, haltCause: `halted: ${CAUSE}`, ...over });
const rollingBack = (over: Partial<LifecycleState> = {}) =>
  at('rolling_back', { haltReason: CAUSE, haltCause: `halted: ${CAUSE}`, ...over });
const sre = (reason: string): LifecycleEvent => ({
  type: 'rollback',
  by: { id: 'tok_sre', name: 'sre-operator' },
  reason,
});

function next(s: LifecycleState, e: LifecycleEvent): LifecycleState {
  const d = decide(s, e, NOW);
  if (!d.ok) throw new Error(`refused: ${d.code} ${d.message}`);
  return d.next;
}

describe('the cause of a halt survives what is done after it', () => {
  it.each<[string, LifecycleState, LifecycleEvent, string]>([
    [
      'halted + an operator rollback',
      halted(),
      sre('downstream fixed, retry rollback'),
      `rollback by sre-operator: downstream fixed, retry rollback (halted: ${CAUSE})`,
    ],
    [
      'rolling_back + restores that failed',
      rollingBack(),
      ev.rollbackSettled(4, 16),
      `16 item(s) could not be restored; see the item ledger (halted: ${CAUSE})`,
    ],
    [
      "an operator's rollback of a halted operation + restores that failed: the operator's reason stays",
      rollingBack({ haltReason: `rollback by sre-operator: undo site 1 (halted: ${CAUSE})` }),
      ev.rollbackSettled(4, 1),
      `rollback by sre-operator: undo site 1: 1 item(s) could not be restored; see the item ledger (halted: ${CAUSE})`,
    ],
    [
      "an operator's rollback of a completed operation + restores that failed (a trial)",
      at('rolling_back', { haltReason: 'rollback by sre-operator: undo site 1', haltCause: null }),
      ev.rollbackSettled(2, 1),
      'rollback by sre-operator: undo site 1: 1 item(s) could not be restored; see the item ledger',
    ],
    [
      'rollback_incomplete + an operator rollback',
      at('rollback_incomplete', {
        haltReason: `16 item(s) could not be restored; see the item ledger (halted: ${CAUSE})`,
        haltCause: `halted: ${CAUSE}`,
      }),
      sre('downstream fixed, retry rollback'),
      `rollback by sre-operator: downstream fixed, retry rollback (halted: ${CAUSE})`,
    ],
    [
      'rolling_back + an operator ending the rollback',
      rollingBack(),
      ev.abort(true),
      `rollback aborted by oncall-operator: wrong list (halted: ${CAUSE})`,
    ],
    [
      'a halted restore + abort',
      halted({ kind: 'restore' }),
      ev.abort(),
      `restore aborted by oncall-operator: wrong list (halted: ${CAUSE})`,
    ],
    [
      'paused as inconclusive + an operator rollback: the pause is the cause',
      at('paused', {
        haltReason: 'inconclusive: no health probe for t1 (not_configured)',
        haltCause: 'paused: inconclusive: no health probe for t1 (not_configured)',
      }),
      ev.rollback(),
      'rollback by oncall-operator: customer complaint (paused: inconclusive: no health probe for t1 (not_configured))',
    ],
    [
      'halted (onHalt rollback) + abort: the first halt stays the cause',
      halted({ haltPolicy: { ...DEFAULT_HALT } }),
      ev.abort(),
      `aborted by oncall-operator: wrong list (halted: ${CAUSE})`,
    ],
    [
      'paused by the watchdog + abort: the operator acts on a stop that has its cause',
      at('paused', {
        haltReason: 'stalled: no progress for 900s (limit 900s)',
        haltCause: 'paused: stalled: no progress for 900s (limit 900s)',
      }),
      ev.abort(),
      'aborted by oncall-operator: wrong list (paused: stalled: no progress for 900s (limit 900s))',
    ],
  ])('%s', (_name, from, event, reason) => {
    const n = next(from, event);
    expect(n.haltReason).toBe(reason);
    expect(n.haltCause).toBe(from.haltCause);
  });

  it('a halt while paused (a signal, a probe) is the cause from then on: it outranks the pause', () => {
    const n = next(at('paused', { haltReason: 'lunch', haltCause: 'paused: lunch' }), ev.signal('t1'));
    expect([n.haltReason, n.haltCause]).toEqual([
      'signal support_ticket for tenant t1: site down',
      'halted: signal support_ticket for tenant t1: site down',
    ]);
  });

  it('a rollback of an operation that never stopped says only what the operator said', () => {
    const n = next(at('completed', { haltCause: null }), ev.rollback());
    expect(n.haltReason).toBe('rollback by oncall-operator: customer complaint');
    expect(n.haltCause).toBe(null);
  });

  it('a halt records its reason as the cause; a pause records its own', () => {
    const h = next(at('running', { currentWave: 1 }), ev.outcomes(1, stats(10, 5, 5, 10)));
    expect(h.state).toBe('rolling_back');
    expect(h.haltCause).toBe(`halted: ${h.haltReason}`);
    const p = next(at('running'), ev.pause());
    expect([p.haltReason, p.haltCause]).toEqual(['lunch', 'paused: lunch']);
  });

  it('running again forgets the cause: a later stop has its own', () => {
    const resumed = next(halted(), ev.resume());
    expect([resumed.state, resumed.haltReason, resumed.haltCause]).toEqual(['running', null, null]);
    const again = next(resumed, ev.signal('t9'));
    expect(again.haltCause).toBe('halted: signal support_ticket for tenant t9: site down');
  });

  it('the whole trial, step by step: the cause is said once at every step, never nested', () => {
    let s = at('running', { currentWave: 1, waveCount: 3, haltCause: null });
    const seen: string[] = [];
    const steps: LifecycleEvent[] = [
      { ...ev.outcomes(1, stats(3, 5, 5, 20)), lastError: 'HTTP 500 Internal Server Error' } as LifecycleEvent,
      ev.rollbackSettled(4, 16),
      sre('downstream fixed, retry rollback'),
      ev.rollbackSettled(16, 4),
      sre('downstream fixed again'),
      ev.rollbackSettled(20, 0),
    ];
    for (const e of steps) {
      s = next(s, e);
      seen.push(s.haltReason!);
    }
    expect(s.state).toBe('rolled_back');
    expect(seen[0]).toBe(CAUSE);
    for (const r of seen.slice(1)) expect(r.split(CAUSE)).toHaveLength(2); // said exactly once
    expect(s.haltReason).toBe(`rollback by sre-operator: downstream fixed again (halted: ${CAUSE})`);
  });

  it("the audit keeps the operator's own words, with the haltReason they led to", () => {
    const d = decide(halted(), sre('downstream fixed, retry rollback'), NOW);
    expect(d.ok && d.effects.find((x) => x.type === 'audit')).toMatchObject({
      action: 'operation.rollback_started',
      detail: {
        reason: 'downstream fixed, retry rollback',
        haltReason: `rollback by sre-operator: downstream fixed, retry rollback (halted: ${CAUSE})`,
      },
    });
  });
});
