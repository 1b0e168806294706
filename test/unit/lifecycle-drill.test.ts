// The restore drill's rules (lifecycle-drill.ts): the first wave that deleted anything does not move
// on until its drill answers; a failure, or no answer by the deadline or the stall limit, halts with
// restore_drill_failed through the normal halt path.
import { describe, expect, it } from 'vitest';
import {
  decide,
  type LifecycleEvent,
  type LifecycleState,
  type OpState,
  type WaveStats,
} from '../../src/modules/operations/lifecycle.ts';
import { DEFAULT_HALT } from '../../src/modules/operations/policy.ts';
import { at, ev, fx, HALT_PAUSE, HALT_ROLLBACK, NOW, stats } from './lifecycle.fixtures.ts';

const drillAt = (state: OpState, over: Partial<LifecycleState> = {}) =>
  at(state, { currentWave: 0, drill: 'pending', ...over });
const ok = (s: LifecycleState, e: LifecycleEvent, now = NOW) => {
  const d = decide(s, e, now);
  if (!d.ok) throw new Error(`refused: ${d.code} ${d.message}`);
  return d;
};
const result = (outcome: 'ok' | 'failed', st: WaveStats = stats(10, 0), wave = 0): LifecycleEvent => ({
  type: 'drill_result',
  wave,
  outcome,
  resourceId: 'app-1',
  ...(outcome === 'failed' ? { detail: 'app-1 read back differs from its pre-delete snapshot (data)' } : {}),
  stats: st,
});
const pausePolicy = { haltPolicy: { ...DEFAULT_HALT, onHalt: 'pause' as const } };
const waiting = (over: Partial<LifecycleState> = {}) => drillAt('running', { drill: 'waiting', ...over });

describe('restore drill: when it runs', () => {
  it('a healthy first wave that deleted items asks for the drill and stays running (no bake, no next wave)', () => {
    const d = ok(drillAt('running'), ev.settled(0, stats(10, 0)));
    expect(d.next).toMatchObject({ state: 'running', currentWave: 0, drill: 'waiting' });
    expect(fx(d.effects)).toEqual(['audit', 'run_drill:0']);
    expect(d.effects[0]).toMatchObject({ action: 'operation.drill_started' });
  });

  it('an empty wave is passed over: the drill is due at the first wave that deletes something', () => {
    const empty = ok(drillAt('running'), ev.settled(0, stats(0, 0)));
    expect(empty.next).toMatchObject({ state: 'running', currentWave: 1, drill: 'pending' });
    expect(fx(empty.effects)).toEqual(['audit', 'enqueue_wave:1']);
    const d = ok(empty.next, ev.settled(1, stats(3, 0)));
    expect(fx(d.effects)).toEqual(['audit', 'run_drill:1']);
  });

  it('a duplicate settle while the drill is out changes nothing (the reconciler re-arms the job)', () => {
    const d = ok(waiting(), ev.settled(0, stats(10, 0)));
    expect(d.next).toBe(d.next);
    expect(d.effects).toEqual([]);
  });

  it.each<[string, Partial<LifecycleState>]>([
    ['drill off (policy false, or a hard delete)', { drill: 'off' }],
    ['a restore', { kind: 'restore' }],
    ['a drill already passed', { drill: 'passed' }],
  ])('%s: the wave settles into its bake as before', (_name, over) => {
    const d = ok(drillAt('running', over), ev.settled(0, stats(10, 0)));
    expect(d.next.state).toBe('baking');
    expect(fx(d.effects)).toEqual(['audit', 'start_bake:0']);
  });

  it('an unhealthy wave halts as before, without a drill', () => {
    const d = ok(drillAt('running'), ev.settled(0, stats(0, 6, 6)));
    expect(fx(d.effects)).toEqual(HALT_ROLLBACK);
    expect(d.next.drill).toBe('pending');
  });
});

describe('restore drill: its answer', () => {
  it('ok → the wave goes on to its bake, the drill audited first', () => {
    const d = ok(waiting(), result('ok'));
    expect(d.next).toMatchObject({ state: 'baking', drill: 'passed' });
    expect(fx(d.effects)).toEqual(['audit', 'audit', 'start_bake:0']);
    expect(d.effects[0]).toMatchObject({
      action: 'operation.drill',
      detail: { outcome: 'ok', resourceId: 'app-1' },
    });
  });

  it('ok never passes the wave as empty (it had an item to drill): it bakes whatever the counts say', () => {
    const d = ok(waiting(), result('ok', stats(0, 0)));
    expect(d.next.state).toBe('baking');
    expect(fx(d.effects)).toEqual(['audit', 'audit', 'start_bake:0']);
  });

  it('ok in a one-wave operation finishes it, counting the failures its stats report', () => {
    expect(ok(waiting({ waveCount: 1 }), result('ok')).next.state).toBe('completed');
    expect(ok(waiting({ waveCount: 1 }), result('ok', stats(10, 1))).next.state).toBe('completed_with_failures');
  });

  it('failed → halt with restore_drill_failed: onHalt rollback rolls back', () => {
    const d = ok(waiting(), result('failed'));
    expect(d.next).toMatchObject({ state: 'rolling_back', drill: 'failed' });
    expect(d.next.haltReason).toMatch(/^restore_drill_failed: app-1 read back differs/);
    expect(fx(d.effects)).toEqual(['stop_execution', 'audit', 'audit', 'enqueue_rollback']);
    expect(d.effects[1]).toMatchObject({ action: 'operation.drill', detail: { outcome: 'failed' } });
    expect(d.effects[2]).toMatchObject({ action: 'operation.halted' });
  });

  it('failed → onHalt pause halts and waits; a resume re-runs the wave and then the drill', () => {
    const d = ok(waiting(pausePolicy), result('failed'));
    expect(d.next).toMatchObject({ state: 'halted', drill: 'failed' });
    expect(fx(d.effects)).toEqual(['stop_execution', 'audit', 'audit']);
    const resumed = ok(d.next, ev.resume());
    expect(resumed.next).toMatchObject({ state: 'running', currentWave: 0 });
    expect(fx(resumed.effects)).toEqual(['audit', 'enqueue_wave:0']);
    const again = ok(resumed.next, ev.settled(0, stats(10, 0)));
    expect(fx(again.effects)).toEqual(['audit', 'run_drill:0']);
  });

  it('failed while paused still halts (a pause does not hide an undoable delete)', () => {
    const paused = waiting({ state: 'paused', pausedFrom: 'running', haltReason: 'lunch' });
    const d = ok(paused, result('failed'));
    expect(d.next.state).toBe('rolling_back');
    expect(d.next.haltReason).toMatch(/^restore_drill_failed/);
  });

  it('ok while paused is kept; the resume settles the wave again and it goes on without a second drill', () => {
    const paused = waiting({ state: 'paused', pausedFrom: 'running', haltReason: 'lunch' });
    const d = ok(paused, result('ok'));
    expect(d.next).toMatchObject({ state: 'paused', drill: 'passed' });
    const resumed = ok(d.next, ev.resume());
    const settled = ok(resumed.next, ev.settled(0, stats(10, 0)));
    expect(fx(settled.effects)).toEqual(['audit', 'start_bake:0']);
  });

  it('a resume while the drill was out runs it again (its answer may never come)', () => {
    const paused = waiting({ state: 'paused', pausedFrom: 'running', haltReason: 'lunch' });
    const resumed = ok(paused, ev.resume());
    expect(resumed.next.drill).toBe('due');
    expect(fx(ok(resumed.next, ev.settled(0, stats(10, 0))).effects)).toEqual(['audit', 'run_drill:0']);
    // Due in this wave: a re-settle whatever its counts runs it (never a way past it).
    expect(fx(ok(resumed.next, ev.settled(0, stats(0, 0))).effects)).toEqual(['audit', 'run_drill:0']);
  });

  it.each<[string, LifecycleState, LifecycleEvent]>([
    ['no drill out', drillAt('running'), result('failed')],
    ['another wave', waiting(), result('failed', stats(10, 0), 1)],
    ['already halted', waiting({ state: 'halted', haltReason: 'x' }), result('failed')],
    ['rolling back', waiting({ state: 'rolling_back', haltReason: 'x' }), result('ok')],
  ])('a late answer (%s) changes nothing but is audited, as every drill is', (_name, s, e) => {
    const d = ok(s, e);
    expect(d.next).toBe(s);
    expect(fx(d.effects)).toEqual(['audit']);
    expect(d.effects[0]).toMatchObject({
      action: 'operation.drill',
      detail: {
        outcome: (e as { outcome: string }).outcome,
        resourceId: 'app-1',
        wave: (e as { wave: number }).wave,
        late: true,
      },
    });
  });

  it('bad stats → 422', () => {
    expect(decide(waiting(), result('ok', stats(10, 0, 0, 3)), NOW)).toMatchObject({ ok: false, status: 422 });
    expect(decide(waiting(), result('ok', stats(-1, 0)), NOW)).toMatchObject({ ok: false, status: 422 });
  });
});

describe('restore drill: a drill that never answers halts', () => {
  it('at the wave deadline', () => {
    const d = ok(waiting({ waveDeadline: NOW - 1 }), ev.timer());
    expect(d.next.haltReason).toMatch(/^restore_drill_failed: no drill result within the wave deadline of 3600s/);
    expect(fx(d.effects)).toEqual(HALT_ROLLBACK);
    expect(d.next.drill).toBe('failed');
  });

  it('at the stall limit, even when onStall says pause', () => {
    const s = waiting({
      progressAt: NOW - 901_000,
      haltPolicy: { ...DEFAULT_HALT, onStall: 'pause', onHalt: 'pause' },
    });
    const d = ok(s, ev.timer());
    expect(d.next.state).toBe('halted');
    expect(d.next.haltReason).toMatch(/^restore_drill_failed: no drill result for 901s \(stall limit 900s\)/);
    expect(fx(d.effects)).toEqual(HALT_PAUSE);
  });

  it('before either, the clock changes nothing', () => {
    const s = waiting();
    expect(ok(s, ev.timer()).next).toBe(s);
  });
});
