// Table tests for the pure lifecycle: one row per rule (see lifecycle.cases.ts), then the terminal
// states, the audit details the workers rely on, and the small helpers.
import { describe, expect, it } from 'vitest';
import {
  decide,
  ENDED_STATES,
  mayExecute,
  OP_STATES,
  TERMINAL_STATES,
  type Effect,
  type LifecycleState,
} from '../../src/modules/operations/lifecycle.ts';
import { DEFAULT_HALT } from '../../src/modules/operations/policy.ts';
import { assessWave, foldOutcomes } from '../../src/modules/operations/wave-health.ts';
import {
  approveCases,
  operatorCases,
  probeCases,
  startCases,
  timerCases,
  waveCases,
  type Case,
} from './lifecycle.cases.ts';
import { at, ev, fx, makeState, NOW, ONE_OF_EACH, stats } from './lifecycle.fixtures.ts';

function check({ from, event, want }: Case) {
  const before = structuredClone(from);
  const d = decide(from, event, NOW);
  expect(from, 'decide must not modify its input').toEqual(before);
  if ('refused' in want) {
    expect(d).toMatchObject({ ok: false, code: want.refused, status: want.status });
    if (want.message && !d.ok) expect(d.message).toMatch(want.message);
    return;
  }
  if (!d.ok) throw new Error(`refused: ${d.code} ${d.message}`);
  if ('noop' in want) {
    expect(d.next).toEqual(from);
    expect(d.effects).toEqual([]);
    return;
  }
  expect(d.next.state).toBe(want.to);
  expect(fx(d.effects)).toEqual(want.effects);
  if (want.next) expect(d.next).toMatchObject(want.next);
  if (want.reason) expect(d.next.haltReason).toMatch(want.reason);
  if (want.guards) expect(d.guards).toEqual(want.guards);
}

describe('lifecycle table', () => {
  describe('approve', () => it.each(approveCases)('$name', check));
  describe('start, cancel', () => it.each(startCases)('$name', check));
  describe('wave reports', () => it.each(waveCases)('$name', check));
  describe('probes', () => it.each(probeCases)('$name', check));
  describe('signals, operator commands, freeze, rollback', () => it.each(operatorCases)('$name', check));
  describe('timers: expiry, deadlines, the stall watchdog', () => it.each(timerCases)('$name', check));
});

describe('terminal states', () => {
  const rows = TERMINAL_STATES.flatMap((s) => ONE_OF_EACH.map((e) => [s, e.type, e] as const));
  it.each(rows)('%s + %s', (s, type, e) => {
    const d = decide(at(s), e, NOW);
    if (type === 'freeze' || type === 'unfreeze' || type === 'timer')
      expect(d).toEqual({ ok: true, next: at(s), effects: [], guards: [] });
    // A report after the end is kept (an audit entry), the state as it was.
    else if (type === 'signal') expect(d).toMatchObject({ ok: true, next: at(s), effects: [{ type: 'audit' }] });
    else
      expect(d).toMatchObject({
        ok: false,
        code: 'INVALID_TRANSITION',
        status: 409,
        message: expect.stringContaining(s),
      });
  });

  const endedRows = ENDED_STATES.flatMap((s) => ONE_OF_EACH.map((e) => [s, e.type, e] as const));
  it.each(endedRows)('%s + %s: only a rollback', (s, type, e) => {
    const d = decide(at(s), e, NOW);
    if (type === 'rollback' || type === 'freeze' || type === 'unfreeze' || type === 'timer') expect(d.ok).toBe(true);
    else if (type === 'signal') expect(d).toMatchObject({ ok: true, next: at(s), effects: [{ type: 'audit' }] });
    else expect(d).toMatchObject({ ok: false, code: 'INVALID_TRANSITION', status: 409 });
  });

  it('every non-terminal state has a way out through an operator command', () => {
    const commands = [ev.abort(), ev.abort(true), ev.rollback(), ev.resume(), ev.cancel(), ev.pause()];
    for (const s of OP_STATES.filter((x) => !TERMINAL_STATES.includes(x))) {
      const exits = commands.filter((e) => {
        const d = decide(at(s), e, NOW);
        return d.ok && d.next.state !== s;
      });
      expect(exits.length, `${s} has no operator exit`).toBeGreaterThan(0);
    }
  });
});

describe('effect details', () => {
  const effectsOf = (s: LifecycleState, e: Parameters<typeof decide>[1]): Effect[] => {
    const d = decide(s, e, NOW);
    if (!d.ok) throw new Error(d.code);
    return d.effects;
  };
  const auditOf = (effects: Effect[]) => effects.find((x) => x.type === 'audit');

  it('a bake ends after the rollout bake time, by the clock decide() was given', () => {
    const s = at('running', { rollout: { ...makeState().rollout, bakeSeconds: 42 } });
    const d = decide(s, ev.settled(1, stats(5, 0)), NOW);
    expect(d.ok && d.next.bakeUntil).toBe(NOW + 42_000);
    expect(d.ok && d.effects).toContainEqual({ type: 'start_bake', wave: 1 });
    // Its audit event says when, as the event streams replay it (it said nothing: bakeUntil null).
    expect(d.ok && auditOf(d.effects)?.detail).toMatchObject({
      to: 'baking',
      bakeUntil: new Date(NOW + 42_000).toISOString(),
    });
  });
  it('stop_execution comes first and carries the halt reason', () => {
    const effects = effectsOf(at('running', { waveDeadline: NOW - 1 }), ev.timer());
    expect(effects[0]).toEqual({
      type: 'stop_execution',
      reason: expect.stringMatching(/wave 2 of 3 missed its deadline/),
    });
  });
  it('audit names the actor and both states', () => {
    expect(auditOf(effectsOf(at('running'), ev.pause()))).toEqual({
      type: 'audit',
      action: 'operation.paused',
      detail: { actor: 'oncall-operator', from: 'running', to: 'paused', wave: 1, reason: 'lunch' },
    });
  });
  it('a rollback with failed restores says how many', () => {
    expect(auditOf(effectsOf(at('rolling_back'), ev.rollbackSettled(8, 2)))).toMatchObject({
      action: 'operation.rollback_incomplete',
      detail: { restored: 8, failed: 2, to: 'rollback_incomplete' },
    });
  });
  it('progress is stamped on every change of state or wave, and only then', () => {
    const moved = decide(at('running'), ev.pause(), NOW);
    expect(moved.ok && moved.next.progressAt).toBe(NOW);
    const recorded = decide(at('approved'), ev.signal('t1'), NOW);
    expect(recorded.ok && recorded.next.progressAt).toBe(null);
  });
  it('a halt audit says what the halt policy did', () => {
    expect(auditOf(effectsOf(at('baking'), ev.signal('t1')))?.detail).toMatchObject({
      onHalt: 'rollback',
      to: 'rolling_back',
      tenantId: 't1',
    });
  });
  it('an unknown event type is refused, not thrown', () => {
    const d = decide(at('running'), { type: 'explode' } as unknown as Parameters<typeof decide>[1], NOW);
    expect(d).toMatchObject({ ok: false, code: 'INVALID_EVENT', status: 422 });
  });
});

describe('assessWave', () => {
  const p = { ...DEFAULT_HALT, minSample: 10, maxFailureRate: 0.1, maxConsecutiveFailures: 3 };
  it.each([
    ['nothing finished', stats(0, 0, 0, 5), true],
    ['nothing finished, settled (empty wave)', stats(0, 0), true],
    ['consecutive failures at the limit', stats(50, 3, 3, 5), false],
    ['consecutive failures below the limit', stats(50, 2, 2, 5), true],
    ['rate at the threshold after minSample', stats(9, 1, 1, 5), true],
    ['rate over the threshold after minSample', stats(8, 2, 1, 5), false],
    ['rate over, sample too small, more to come', stats(2, 2, 1, 50), true],
    ['rate over, small wave complete', stats(2, 1, 1, 0), false],
    ['no failures, small wave complete', stats(2, 0, 0, 0), true],
  ] as const)('%s → healthy %s', (_name, s, healthy) => {
    const r = assessWave(s, p);
    expect(r.healthy).toBe(healthy);
    if (!healthy) expect(r.reason).toBeTruthy();
  });
  it('maxFailureRate 0 halts on the first failure once judged', () => {
    expect(assessWave(stats(0, 1, 1, 0), { ...p, maxFailureRate: 0, maxConsecutiveFailures: 9 }).healthy).toBe(false);
  });
});

describe('foldOutcomes', () => {
  it('counts outcomes in the order they happened; a success ends the streak', () => {
    expect(foldOutcomes(stats(0, 2, 2, 10), ['failed', 'done', 'failed'])).toEqual(stats(1, 4, 1, 7));
    expect(foldOutcomes(stats(5, 1, 1, 4), ['failed', 'failed'])).toEqual(stats(5, 3, 3, 2));
    expect(foldOutcomes(stats(5, 1, 1, 4), [])).toEqual(stats(5, 1, 1, 4));
  });
});

describe('helpers', () => {
  it('mayExecute: only running and not frozen', () => {
    expect(mayExecute({ state: 'running', frozen: false })).toBe(true);
    expect(mayExecute({ state: 'running', frozen: true })).toBe(false);
    expect(mayExecute({ state: 'baking', frozen: false })).toBe(false);
    expect(mayExecute({ state: 'paused', frozen: false })).toBe(false);
  });
});
