// The lifecycle rules as a table: (state, event) → refusal, no-op, or next state + effects.
// Terminal states are checked by a generated loop in lifecycle.test.ts, not listed here.
import type { LifecycleEvent, LifecycleState, OpState } from '../../src/modules/operations/lifecycle.ts';
import { DEFAULT_HALT } from '../../src/modules/operations/policy.ts';
import { at, ev, HALT_PAUSE, HALT_ROLLBACK, NOW, probe, REQUESTER, stats } from './lifecycle.fixtures.ts';

export type Want =
  | { refused: string; status: 403 | 409 | 422; message?: RegExp }
  | { noop: true }
  | { to: OpState; effects: string[]; next?: Partial<LifecycleState>; reason?: RegExp; guards?: string[] };
export interface Case {
  name: string;
  from: LifecycleState;
  event: LifecycleEvent;
  want: Want;
}

const pausePolicy = { haltPolicy: { ...DEFAULT_HALT, onHalt: 'pause' as const } };
const optionalProbes = { haltPolicy: { ...DEFAULT_HALT, probe: 'optional' as const } };
const approvedBy = (by: string, role: 'approver' | 'admin' = 'approver', planHash = 'h1') => ({ by, role, planHash });
const bg = { requiresBreakGlass: true };
const healthy = stats(10, 0);
const c = (name: string, from: LifecycleState, event: LifecycleEvent, want: Want): Case => ({
  name,
  from,
  event,
  want,
});

export const approveCases: Case[] = [
  c('requester approving own operation → 403 SELF_APPROVAL', at('planned'), ev.approve(REQUESTER), {
    refused: 'SELF_APPROVAL',
    status: 403,
  }),
  c('admin requester approving own operation → 403 SELF_APPROVAL', at('planned'), ev.approve(REQUESTER, 'admin'), {
    refused: 'SELF_APPROVAL',
    status: 403,
  }),
  c(
    'self-approval is judged by token id, not name: another token that shares the name may approve',
    at('planned'),
    { type: 'approve', by: { id: 'tok_a', name: 'ci-pipeline' }, role: 'approver', planHash: 'h1' },
    { to: 'approved', effects: ['audit'], next: { approvals: [approvedBy('tok_a')] } },
  ),
  c('operator role cannot approve → 403', at('planned'), ev.approve('tok_a', 'operator'), {
    refused: 'FORBIDDEN',
    status: 403,
  }),
  c('requester role cannot approve → 403', at('planned'), ev.approve('tok_a', 'requester'), {
    refused: 'FORBIDDEN',
    status: 403,
  }),
  c('viewer role cannot approve → 403', at('planned'), ev.approve('tok_a', 'viewer'), {
    refused: 'FORBIDDEN',
    status: 403,
  }),
  c('approval of another plan hash → 409', at('planned'), ev.approve('tok_a', 'approver', 'h0'), {
    refused: 'PLAN_HASH_MISMATCH',
    status: 409,
  }),
  c(
    'second approval by the same person → 409',
    at('planned', { ...bg, approvals: [approvedBy('tok_a')] }),
    ev.approve('tok_a'),
    { refused: 'DUPLICATE_APPROVAL', status: 409, message: /^alice has already approved/ },
  ),
  c(
    'a retried approval after the operation moved on → DUPLICATE_APPROVAL, not INVALID_TRANSITION',
    at('approved', { approvals: [approvedBy('tok_a')] }),
    ev.approve('tok_a'),
    { refused: 'DUPLICATE_APPROVAL', status: 409 },
  ),
  c('approver approves → approved', at('planned'), ev.approve(), {
    to: 'approved',
    effects: ['audit'],
    next: { approvals: [approvedBy('tok_a')], currentWave: null },
  }),
  c('admin approves → approved', at('planned'), ev.approve('tok_b', 'admin'), { to: 'approved', effects: ['audit'] }),
  c(
    'autoStart: approval starts wave 0, once the plan is checked fresh',
    at('planned', { autoStart: true }),
    ev.approve(),
    {
      to: 'running',
      effects: ['audit', 'enqueue_wave:0'],
      next: { currentWave: 0, expiresAt: null, waveDeadline: NOW + 3_600_000 },
      guards: ['plan_fresh'],
    },
  ),
  c('approval of an expired plan → 409 OPERATION_EXPIRED', at('planned', { expiresAt: NOW }), ev.approve(), {
    refused: 'OPERATION_EXPIRED',
    status: 409,
  }),
  // Approved only, it sat still saying nothing, and did not start when the freeze lifted (a trial).
  c(
    'autoStart while frozen: the approval that would start it → 409 FROZEN',
    at('planned', { autoStart: true, frozen: true }),
    ev.approve(),
    {
      refused: 'FROZEN',
      status: 409,
      message: /starts itself once approved \(autoStart\); approve it after the freeze is lifted/,
    },
  ),
  c('break-glass: one approver is not enough', at('planned', bg), ev.approve(), {
    to: 'planned',
    effects: ['audit'],
    next: { approvals: [approvedBy('tok_a')] },
  }),
  c('break-glass: one admin is not enough', at('planned', bg), ev.approve('tok_b', 'admin'), {
    to: 'planned',
    effects: ['audit'],
  }),
  c(
    'break-glass: two approvers without an admin is not enough',
    at('planned', { ...bg, approvals: [approvedBy('tok_a')] }),
    ev.approve('tok_b'),
    { to: 'planned', effects: ['audit'] },
  ),
  c(
    'break-glass: approver + admin → approved',
    at('planned', { ...bg, approvals: [approvedBy('tok_a')] }),
    ev.approve('tok_b', 'admin'),
    { to: 'approved', effects: ['audit'] },
  ),
  c(
    'break-glass: admin + approver → approved',
    at('planned', { ...bg, approvals: [approvedBy('tok_b', 'admin')] }),
    ev.approve('tok_a'),
    { to: 'approved', effects: ['audit'] },
  ),
  c(
    'break-glass: an approval of an older plan does not count',
    at('planned', { ...bg, approvals: [approvedBy('tok_a', 'approver', 'h0')] }),
    ev.approve('tok_b', 'admin'),
    { to: 'planned', effects: ['audit'] },
  ),
  c('approve when already approved → 409', at('approved', { approvals: [approvedBy('tok_a')] }), ev.approve('tok_b'), {
    refused: 'INVALID_TRANSITION',
    status: 409,
    message: /approved/,
  }),
];

export const startCases: Case[] = [
  c(
    'operator starts → running wave 0 with its deadline, once the plan is checked fresh',
    at('approved'),
    ev.start('operator'),
    {
      to: 'running',
      effects: ['audit', 'enqueue_wave:0'],
      next: { currentWave: 0, waveDeadline: NOW + 3_600_000, expiresAt: null, progressAt: NOW },
      guards: ['plan_fresh'],
    },
  ),
  c('start of an expired plan → 409 OPERATION_EXPIRED', at('approved', { expiresAt: NOW - 1 }), ev.start(), {
    refused: 'OPERATION_EXPIRED',
    status: 409,
    message: /submit it again/,
  }),
  c('admin starts → running wave 0', at('approved'), ev.start('admin'), {
    to: 'running',
    effects: ['audit', 'enqueue_wave:0'],
  }),
  c('approver cannot start → 403', at('approved'), ev.start('approver'), { refused: 'FORBIDDEN', status: 403 }),
  c('start while frozen → 409 FROZEN', at('approved', { frozen: true }), ev.start(), {
    refused: 'FROZEN',
    status: 409,
  }),
  c('start before approval → 409 naming the state', at('planned'), ev.start(), {
    refused: 'INVALID_TRANSITION',
    status: 409,
    message: /planned/,
  }),
  c('start when running → 409 naming the state', at('running'), ev.start(), {
    refused: 'INVALID_TRANSITION',
    status: 409,
    message: /running/,
  }),
  c('planned + cancel → cancelled', at('planned'), ev.cancel(), { to: 'cancelled', effects: ['audit'] }),
  c('approved + cancel → cancelled', at('approved'), ev.cancel(), { to: 'cancelled', effects: ['audit'] }),
  c('planned + abort → cancelled', at('planned'), ev.abort(), { to: 'cancelled', effects: ['audit'] }),
  c('approved + abort → cancelled', at('approved'), ev.abort(), { to: 'cancelled', effects: ['audit'] }),
  c('running + cancel → 409 (use abort)', at('running'), ev.cancel(), {
    refused: 'INVALID_TRANSITION',
    status: 409,
    message: /abort/,
  }),
];

export const waveCases: Case[] = [
  c('healthy progress → no change', at('running'), ev.outcomes(1, stats(5, 0, 0, 50)), { noop: true }),
  c('5 consecutive failures → halt, roll back', at('running'), ev.outcomes(1, stats(2, 5, 5, 50)), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /consecutive/,
  }),
  c(
    "5 consecutive failures → the halt reason quotes the last item's error",
    at('running'),
    {
      type: 'item_outcomes',
      wave: 1,
      stats: stats(2, 5, 5, 50),
      lastError: 'adapter for type svc unavailable: no signingSecret',
    },
    {
      to: 'rolling_back',
      effects: HALT_ROLLBACK,
      reason:
        /^wave 2 of \d+: 5 consecutive item failures \(limit 5\); last error: adapter for type svc unavailable: no signingSecret$/,
    },
  ),
  c('5 consecutive failures, onHalt pause → halted', at('running', pausePolicy), ev.outcomes(1, stats(2, 5, 5, 50)), {
    to: 'halted',
    effects: HALT_PAUSE,
  }),
  c('rate exactly at 5% after minSample → no change', at('running'), ev.outcomes(1, stats(19, 1, 1, 80)), {
    noop: true,
  }),
  c('rate 10% after minSample → halt', at('running'), ev.outcomes(1, stats(18, 2, 1, 80)), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /failure rate 10%/,
  }),
  c('rate 25% below minSample, items pending → not judged yet', at('running'), ev.outcomes(1, stats(3, 1, 1, 80)), {
    noop: true,
  }),
  c('small wave settled at 25% failures → halt', at('running'), ev.settled(1, stats(3, 1, 1)), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
  }),
  c('small wave settled without failures → bake', at('running'), ev.settled(1, stats(3, 0)), {
    to: 'baking',
    effects: ['audit', 'start_bake:1'],
  }),
  c('healthy settle → baking until the bake time is over', at('running'), ev.settled(1, healthy), {
    to: 'baking',
    effects: ['audit', 'start_bake:1'],
    next: { currentWave: 1, bakeUntil: NOW + 300_000, waveDeadline: null },
  }),
  c('healthy settle with a few failures → baking, failures carried', at('running'), ev.settled(1, stats(99, 1, 1)), {
    to: 'baking',
    effects: ['audit', 'start_bake:1'],
    next: { failedBefore: 1 },
  }),
  c('healthy settle of the last wave → completed, no bake', at('running', { currentWave: 2 }), ev.settled(2, healthy), {
    to: 'completed',
    effects: ['audit'],
    next: { haltReason: null },
  }),
  c(
    'last wave settled healthy but with a failed item → completed_with_failures, not completed',
    at('running', { currentWave: 2 }),
    ev.settled(2, stats(99, 1, 1)),
    { to: 'completed_with_failures', effects: ['audit'], reason: /1 item\(s\) failed/ },
  ),
  c(
    'clean last wave after an earlier wave had failures → completed_with_failures',
    at('running', { currentWave: 2, failedBefore: 2 }),
    ev.settled(2, healthy),
    { to: 'completed_with_failures', effects: ['audit'], reason: /2 item/ },
  ),
  c('settle of an empty wave → next wave without a bake', at('running'), ev.settled(1, stats(0, 0)), {
    to: 'running',
    effects: ['audit', 'enqueue_wave:2'],
    next: { currentWave: 2 },
  }),
  c('stale settle of an earlier wave → no change', at('running'), ev.settled(0, stats(0, 9, 9)), { noop: true }),
  c('report for a later wave → no change', at('running'), ev.outcomes(2, stats(0, 9, 9, 1)), { noop: true }),
  c('wave_settled with pending items → 422', at('running'), ev.settled(1, stats(3, 0, 0, 2)), {
    refused: 'INVALID_EVENT',
    status: 422,
  }),
  c('negative stats → 422', at('running'), ev.outcomes(1, stats(-1, 0)), { refused: 'INVALID_EVENT', status: 422 }),
  c('duplicate settle while baking → no change', at('baking'), ev.settled(1, healthy), { noop: true }),
  c('paused (from running) + unhealthy in-flight outcomes → halt', at('paused'), ev.outcomes(1, stats(0, 5, 5, 3)), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    next: { pausedFrom: null },
  }),
  c('paused (from running) + healthy settle → no change (resume re-judges)', at('paused'), ev.settled(1, healthy), {
    noop: true,
  }),
  c('halted + unhealthy outcomes → no change', at('halted', pausePolicy), ev.outcomes(1, stats(0, 9, 9)), {
    noop: true,
  }),
];

const h = (t: string) => probe(t, 'healthy');
export const probeCases: Case[] = [
  c('all healthy, bake over → next wave', at('baking'), ev.probes(1, [h('t1'), h('t2')]), {
    to: 'running',
    effects: ['audit', 'enqueue_wave:2'],
    next: { currentWave: 2 },
  }),
  c('all healthy, bake not over → no change', at('baking', { bakeUntil: NOW + 1 }), ev.probes(1, [h('t1')]), {
    noop: true,
  }),
  c('one unhealthy probe → halt', at('baking'), ev.probes(1, [h('t1'), probe('t2', 'unhealthy')]), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /t2/,
  }),
  c('probe error → halt (fail closed)', at('baking', { bakeUntil: NOW + 1 }), ev.probes(1, [probe('t1', 'error')]), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
  }),
  c('probe timeout → halt (fail closed)', at('baking', pausePolicy), ev.probes(1, [probe('t1', 'timeout')]), {
    to: 'halted',
    effects: HALT_PAUSE,
  }),
  c('no probe data → halt', at('baking'), ev.probes(1, []), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /no probe data: nothing was sent to any tenant so far, or every call was refused with no effect/,
  }),
  c(
    'probe not configured, probes required → paused (inconclusive)',
    at('baking'),
    ev.probes(1, [h('t1'), probe('t2', 'not_configured')]),
    { to: 'paused', effects: ['stop_execution', 'audit'], next: { pausedFrom: 'baking' }, reason: /inconclusive.*t2/ },
  ),
  c(
    'probe not configured, probes optional → next wave',
    at('baking', optionalProbes),
    ev.probes(1, [probe('t2', 'not_configured')]),
    { to: 'running', effects: ['audit', 'enqueue_wave:2'] },
  ),
  c(
    'unhealthy beats inconclusive → halt',
    at('baking'),
    ev.probes(1, [probe('t1', 'not_configured'), probe('t2', 'unhealthy')]),
    { to: 'rolling_back', effects: HALT_ROLLBACK },
  ),
  c('stale probes of an earlier wave → no change', at('baking'), ev.probes(0, [probe('t1', 'unhealthy')]), {
    noop: true,
  }),
  c('unhealthy probe of the running wave → halt', at('running'), ev.probes(1, [probe('t1', 'unhealthy')]), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
  }),
  c('paused during bake + healthy round → no change', at('paused', { pausedFrom: 'baking' }), ev.probes(1, [h('t1')]), {
    noop: true,
  }),
  c(
    'baking the last wave (defensive) + healthy → completed',
    at('baking', { currentWave: 2 }),
    ev.probes(2, [h('t1')]),
    { to: 'completed', effects: ['audit'] },
  ),
  c(
    'baking while frozen (inconsistent) + healthy → paused, no wave',
    at('baking', { frozen: true }),
    ev.probes(1, [h('t1')]),
    { to: 'paused', effects: ['stop_execution', 'audit'], next: { currentWave: 2, pausedFrom: 'running' } },
  ),
];

export const operatorCases: Case[] = [
  c('running + signal → halt', at('running'), ev.signal(), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /support_ticket/,
  }),
  c('baking + signal → halt naming the tenant', at('baking'), ev.signal('t7'), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /tenant t7/,
  }),
  c('paused + signal → halt', at('paused', pausePolicy), ev.signal(), { to: 'halted', effects: HALT_PAUSE }),
  c('approved + signal → recorded, no change', at('approved'), ev.signal('t1'), { to: 'approved', effects: ['audit'] }),
  c('running + timer past the wave deadline → halt', at('running', { waveDeadline: NOW }), ev.timer(), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /wave 2 of 3 missed its deadline/,
  }),
  c('running + timer before the deadline → no change', at('running'), ev.timer(), { noop: true }),
  c('baking + timer → no change (the bake has its own clock)', at('baking'), ev.timer(), { noop: true }),
  c('running + pause → paused', at('running'), ev.pause(), {
    to: 'paused',
    effects: ['stop_execution', 'audit'],
    next: { pausedFrom: 'running', haltReason: 'lunch' },
  }),
  c('baking + pause → paused', at('baking'), ev.pause(), {
    to: 'paused',
    effects: ['stop_execution', 'audit'],
    next: { pausedFrom: 'baking' },
  }),
  c('paused + pause → 409', at('paused'), ev.pause(), { refused: 'INVALID_TRANSITION', status: 409 }),
  c('approved + pause → 409', at('approved'), ev.pause(), { refused: 'INVALID_TRANSITION', status: 409 }),
  c('paused (running) + resume → re-queue the wave', at('paused'), ev.resume(), {
    to: 'running',
    effects: ['audit', 'enqueue_wave:1'],
    next: { pausedFrom: null, haltReason: null },
    // Its calls go on only through the systems it was planned against.
    guards: ['same_adapters'],
  }),
  c('paused (baking) + resume → bake again', at('paused', { pausedFrom: 'baking' }), ev.resume(), {
    to: 'baking',
    effects: ['audit', 'start_bake:1'],
    next: { pausedFrom: null },
    // Its calls go on only through the systems it was planned against.
    guards: ['same_adapters'],
  }),
  c('paused + resume while frozen → 409 FROZEN', at('paused', { frozen: true }), ev.resume(), {
    refused: 'FROZEN',
    status: 409,
  }),
  c('halted + resume → running, re-queue the wave', at('halted', pausePolicy), ev.resume(), {
    to: 'running',
    effects: ['audit', 'enqueue_wave:1'],
    next: { haltReason: null },
    // Its calls go on only through the systems it was planned against.
    guards: ['same_adapters'],
  }),
  c('halted + resume while frozen → 409 FROZEN', at('halted', { ...pausePolicy, frozen: true }), ev.resume(), {
    refused: 'FROZEN',
    status: 409,
  }),
  c('running + resume → 409', at('running'), ev.resume(), { refused: 'INVALID_TRANSITION', status: 409 }),
  c('rolling_back + resume → 409', at('rolling_back'), ev.resume(), { refused: 'INVALID_TRANSITION', status: 409 }),
  c('running + abort → halt', at('running'), ev.abort(), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /aborted by oncall-operator: wrong list/,
  }),
  c('baking + abort, onHalt pause → halted', at('baking', pausePolicy), ev.abort(), {
    to: 'halted',
    effects: HALT_PAUSE,
  }),
  c('paused + abort → halt', at('paused'), ev.abort(), { to: 'rolling_back', effects: HALT_ROLLBACK }),
  c('halted (onHalt pause) + abort → refused, naming rollback and resume', at('halted', pausePolicy), ev.abort(), {
    refused: 'INVALID_TRANSITION',
    status: 409,
    message: /halted \(stopped already, waiting for a human\): rollback restores what it deleted, resume continues it/,
  }),
  c('halted (onHalt rollback) + abort → rolls back', at('halted'), ev.abort(), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
  }),
  c(
    'rolling_back + abort with endRollback → rollback_incomplete: the way out of a rollback that cannot finish',
    at('rolling_back'),
    ev.abort(true),
    {
      to: 'rollback_incomplete',
      effects: ['stop_execution', 'audit'],
      reason: /rollback aborted by oncall-operator: wrong list/,
    },
  ),
  // A second abort (a double click, a retried request) must not end the rollback the first started.
  c('rolling_back + abort → refused: it is already rolling back', at('rolling_back'), ev.abort(), {
    refused: 'INVALID_TRANSITION',
    status: 409,
    message: /already rolling back.*endRollback: true/,
  }),
  ...(['running', 'paused', 'halted'] as const).map((s) =>
    c(`${s} + abort with endRollback → refused: there is no rollback to end`, at(s), ev.abort(true), {
      refused: 'INVALID_TRANSITION',
      status: 409,
      message: /endRollback/,
    }),
  ),
  ...(['running', 'baking', 'paused', 'halted'] as const).map((s) =>
    c(`${s} + rollback → rolling_back`, at(s, pausePolicy), ev.rollback(), {
      to: 'rolling_back',
      effects: HALT_ROLLBACK,
      next: { pausedFrom: null },
      reason: /rollback by oncall-operator: customer complaint/,
      // Its restores go only through the systems it deleted from.
      guards: ['same_adapters'],
    }),
  ),
  ...(['completed', 'completed_with_failures', 'rollback_incomplete'] as const).map((s) =>
    c(`${s} + rollback → rolling_back, after taking its resources back`, at(s), ev.rollback(), {
      to: 'rolling_back',
      effects: HALT_ROLLBACK,
      guards: ['same_adapters', 'take_locks'],
    }),
  ),
  ...(['planned', 'approved', 'rolling_back'] as const).map((s) =>
    c(`${s} + rollback → 409`, at(s), ev.rollback(), { refused: 'INVALID_TRANSITION', status: 409 }),
  ),
  c('running + freeze → paused, frozen', at('running'), ev.freeze(), {
    to: 'paused',
    effects: ['stop_execution', 'audit'],
    next: { frozen: true, pausedFrom: 'running' },
    reason: /^global freeze: incident 42$/,
  }),
  c('baking + freeze → paused, frozen', at('baking'), ev.freeze(), {
    to: 'paused',
    effects: ['stop_execution', 'audit'],
    next: { frozen: true, pausedFrom: 'baking' },
  }),
  c('approved + freeze → frozen only', at('approved'), ev.freeze(), {
    to: 'approved',
    effects: ['audit'],
    next: { frozen: true },
  }),
  c('paused + freeze → frozen only', at('paused'), ev.freeze(), {
    to: 'paused',
    effects: ['audit'],
    next: { frozen: true, pausedFrom: 'running' },
  }),
  c('rolling_back + freeze → rollback carries on', at('rolling_back'), ev.freeze(), {
    to: 'rolling_back',
    effects: ['audit'],
    next: { frozen: true },
  }),
  c('planned + freeze → frozen, recorded on the operation', at('planned'), ev.freeze(), {
    to: 'planned',
    effects: ['audit'],
    next: { frozen: true },
  }),
  c('cancelled + freeze → no change (nothing to stop or record)', at('cancelled'), ev.freeze(), { noop: true }),
  c('completed + freeze → no change', at('completed'), ev.freeze(), { noop: true }),
  c('paused + unfreeze → still paused', at('paused', { frozen: true }), ev.unfreeze(), {
    to: 'paused',
    effects: ['audit'],
    next: { frozen: false },
  }),
  c('approved + unfreeze → recorded on the operation', at('approved', { frozen: true }), ev.unfreeze(), {
    to: 'approved',
    effects: ['audit'],
    next: { frozen: false },
  }),
  c('rolled_back + unfreeze → no change', at('rolled_back', { frozen: true }), ev.unfreeze(), { noop: true }),
  c('rolling_back + rollback_settled → rolled_back, reason kept', at('rolling_back'), ev.rollbackSettled(10, 0), {
    to: 'rolled_back',
    effects: ['audit'],
    next: { haltReason: 'earlier reason' },
  }),
  c(
    'rolling_back + rollback_settled with unrestored items → rollback_incomplete, never rolled_back',
    at('rolling_back'),
    ev.rollbackSettled(0, 10),
    { to: 'rollback_incomplete', effects: ['stop_execution', 'audit'], reason: /10 item\(s\) could not be restored/ },
  ),
  c('rollback_settled with negative counts → 422', at('rolling_back'), ev.rollbackSettled(-1, 0), {
    refused: 'INVALID_EVENT',
    status: 422,
  }),
  c('running + rollback_settled → 409', at('running'), ev.rollbackSettled(), {
    refused: 'INVALID_TRANSITION',
    status: 409,
  }),
];

const STALL = 900_000; // default stallSeconds
export const timerCases: Case[] = [
  c('planned past its TTL → expired', at('planned', { expiresAt: NOW }), ev.timer(), {
    to: 'expired',
    effects: ['audit'],
    reason: /expired/,
  }),
  c('approved past its TTL → expired', at('approved', { expiresAt: NOW - 5 }), ev.timer(), {
    to: 'expired',
    effects: ['audit'],
  }),
  c('planned within its TTL → no change', at('planned'), ev.timer(), { noop: true }),
  c(
    'running with no progress for stallSeconds → halt, reason stalled',
    at('running', { progressAt: NOW - STALL }),
    ev.timer(),
    {
      to: 'rolling_back',
      effects: HALT_ROLLBACK,
      reason: /^stalled: no progress for 900s/,
    },
  ),
  c(
    'running stalled, onStall pause → paused',
    at('running', { progressAt: NOW - STALL, haltPolicy: { ...DEFAULT_HALT, onStall: 'pause' } }),
    ev.timer(),
    { to: 'paused', effects: ['stop_execution', 'audit'], next: { pausedFrom: 'running' }, reason: /stalled/ },
  ),
  c('running with recent progress → no change', at('running', { progressAt: NOW - STALL + 1 }), ev.timer(), {
    noop: true,
  }),
  c('baking long past its end → halt, stalled', at('baking', { bakeUntil: NOW - STALL }), ev.timer(), {
    to: 'rolling_back',
    effects: HALT_ROLLBACK,
    reason: /stalled/,
  }),
  c(
    'rolling_back with no progress → rollback_incomplete, stalled',
    at('rolling_back', { progressAt: NOW - STALL }),
    ev.timer(),
    {
      to: 'rollback_incomplete',
      effects: ['stop_execution', 'audit'],
      reason: /stalled/,
    },
  ),
  c(
    'paused for a long time → no change (a pause waits for a human)',
    at('paused', { progressAt: NOW - 10 * STALL }),
    ev.timer(),
    {
      noop: true,
    },
  ),
  c('running while frozen (a freeze that did not reach it) → paused', at('running', { frozen: true }), ev.timer(), {
    to: 'paused',
    effects: ['stop_execution', 'audit'],
    reason: /global freeze/,
  }),
  c('completed + timer → no change', at('completed', { progressAt: NOW - 10 * STALL }), ev.timer(), { noop: true }),
];
