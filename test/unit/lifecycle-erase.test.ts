// The lifecycle rules of a compliance erasure (kind erase): it starts only with an admin approval
// AND a second approver, two people, neither the requester — whatever its plan says about
// break-glass; it is never rolled back (what it erased has no snapshot left to come back from), so
// a halt waits for a human whatever onHalt says, and an abort ends it (cancelled, never success).
import { describe, expect, it } from 'vitest';
import type { Role } from '../../src/modules/auth/roles.ts';
import {
  decide,
  type LifecycleEvent,
  type LifecycleState,
  type OpState,
} from '../../src/modules/operations/lifecycle.ts';
import { at, ev, fx, HALT_PAUSE, HALT_ROLLBACK, makeState, NOW, REQUESTER, stats } from './lifecycle.fixtures.ts';

const eraseAt = (state: OpState, over: Partial<LifecycleState> = {}) =>
  at(state, { kind: 'erase', requiresBreakGlass: true, ...over });
const ok = (s: LifecycleState, e: LifecycleEvent) => {
  const d = decide(s, e, NOW);
  if (!d.ok) throw new Error(`refused: ${d.code} ${d.message}`);
  return d;
};

/** Applies approvals in order; returns the final state, or the first refusal's code. */
function approveAll(s: LifecycleState, approvals: [string, Role][]): string {
  let cur = s;
  for (const [by, role] of approvals) {
    const d = decide(cur, ev.approve(by, role), NOW);
    if (!d.ok) return d.code;
    cur = d.next;
  }
  return cur.state;
}

describe('an erasure needs an admin approval and a second approver', () => {
  it.each<[string, [string, Role][], string]>([
    ['an admin alone', [['tok_admin', 'admin']], 'planned'],
    ['an approver alone', [['tok_a', 'approver']], 'planned'],
    [
      'two approvers, no admin',
      [
        ['tok_a', 'approver'],
        ['tok_b', 'approver'],
      ],
      'planned',
    ],
    [
      'admin + approver',
      [
        ['tok_admin', 'admin'],
        ['tok_a', 'approver'],
      ],
      'approved',
    ],
    [
      'approver + admin (order does not matter)',
      [
        ['tok_a', 'approver'],
        ['tok_admin', 'admin'],
      ],
      'approved',
    ],
    [
      'two admins',
      [
        ['tok_admin', 'admin'],
        ['tok_c', 'admin'],
      ],
      'approved',
    ],
    [
      'the same admin twice',
      [
        ['tok_admin', 'admin'],
        ['tok_admin', 'admin'],
      ],
      'DUPLICATE_APPROVAL',
    ],
    [
      'the requester as the admin',
      [
        [REQUESTER, 'admin'],
        ['tok_a', 'approver'],
      ],
      'SELF_APPROVAL',
    ],
    [
      'the requester as the second approver',
      [
        ['tok_admin', 'admin'],
        [REQUESTER, 'approver'],
      ],
      'SELF_APPROVAL',
    ],
  ])('%s → %s', (_, approvals, expected) => {
    expect(approveAll(eraseAt('planned'), approvals)).toBe(expected);
  });

  it('holds even if the stored plan does not say break-glass (the kind decides)', () => {
    const s = eraseAt('planned', { requiresBreakGlass: false });
    expect(approveAll(s, [['tok_a', 'approver']])).toBe('planned');
    expect(approveAll(s, [['tok_admin', 'admin']])).toBe('planned');
    expect(
      approveAll(s, [
        ['tok_admin', 'admin'],
        ['tok_a', 'approver'],
      ]),
    ).toBe('approved');
    // The same plan as a plain delete needs one approval.
    expect(approveAll({ ...s, kind: 'delete' }, [['tok_a', 'approver']])).toBe('approved');
  });

  it('a refused approval changes nothing, and start is refused until both are in', () => {
    const one = ok(eraseAt('planned'), ev.approve('tok_admin', 'admin')).next;
    expect(one.approvals).toHaveLength(1);
    expect(decide(one, ev.start(), NOW)).toMatchObject({ ok: false, code: 'INVALID_TRANSITION' });
    expect(decide(one, ev.approve(REQUESTER, 'approver'), NOW)).toMatchObject({ ok: false, code: 'SELF_APPROVAL' });
    const two = ok(one, ev.approve('tok_a', 'approver'));
    expect(two.next.state).toBe('approved');
    expect(two.effects[0]).toMatchObject({ action: 'operation.approved', detail: { breakGlass: true } });
    expect(ok(two.next, ev.start()).next.state).toBe('running');
  });
});

describe('an erasure is never rolled back', () => {
  it.each(['running', 'baking', 'paused', 'halted', 'completed', 'completed_with_failures'] as const)(
    'rollback from %s → 409 ROLLBACK_NOT_SUPPORTED, nothing changes',
    (state) => {
      expect(decide(eraseAt(state), ev.rollback(), NOW)).toMatchObject({
        ok: false,
        status: 409,
        code: 'ROLLBACK_NOT_SUPPORTED',
        message: expect.stringMatching(/erasure is never rolled back/),
      });
      expect(decide(at(state), ev.rollback(), NOW).ok).toBe(true);
    },
  );

  it.each<[string, LifecycleState, LifecycleEvent]>([
    ['a signal', eraseAt('running'), ev.signal('t1')],
    ['an unhealthy wave', eraseAt('running'), ev.outcomes(1, stats(0, 5, 5, 10))],
    ['a stall', eraseAt('running', { progressAt: NOW - 901_000 }), ev.timer()],
  ])('%s halts it to wait, even with onHalt rollback', (_, s, e) => {
    expect(s.haltPolicy.onHalt).toBe('rollback');
    const d = ok(s, e);
    expect(d.next.state).toBe('halted');
    expect(fx(d.effects)).toEqual(HALT_PAUSE);
    expect(fx(ok({ ...s, kind: 'delete' }, e).effects)).toEqual(HALT_ROLLBACK);
  });

  it.each(['running', 'baking', 'paused', 'halted'] as const)('abort from %s ends it cancelled', (state) => {
    const d = ok(eraseAt(state), ev.abort());
    expect(d.next).toMatchObject({ state: 'cancelled', haltReason: 'erasure aborted by oncall-operator: wrong list' });
    expect(fx(d.effects)).toEqual(['stop_execution', 'audit']);
  });

  it('a completed erasure takes no further command (no rollback hint)', () => {
    expect(decide(eraseAt('completed'), ev.pause(), NOW)).toMatchObject({
      ok: false,
      message: 'cannot pause an operation that is completed',
    });
    expect(makeState({ kind: 'erase' }).kind).toBe('erase');
  });
});
