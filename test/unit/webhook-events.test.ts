// Which webhook events an audit event is (issue 9 contract §3), and the Slack form of one.
import { describe, expect, it } from 'vitest';
import {
  buildEvents,
  eventTypesOf,
  matches,
  unknownEventTypes,
  type AuditSource,
} from '../../src/modules/webhooks/events.ts';
import { slackMessage } from '../../src/modules/webhooks/slack.ts';

const op = (kind: string) => ({
  kind,
  state: 'running',
  targetType: 'app',
  itemCount: 3,
  tenantCount: 2,
  waveCount: 2,
  ticket: 'CHG-1',
  reason: 'Remove the legacy app',
  requestedBy: 'ci',
  haltReason: null,
});
const src = (action: string, kind: string | null, payload: Record<string, unknown> = {}): AuditSource => ({
  seq: 7,
  at: '2026-11-30T02:00:00.000Z',
  actor: 'alice',
  action,
  operationId: kind ? 'op_1' : null,
  payload,
  operation: kind ? op(kind) : null,
});

describe('webhook event types', () => {
  it.each([
    ['operation.planned', 'delete', ['operation.planned']],
    ['operation.rejected', 'delete', ['operation.rejected']],
    ['operation.approved', 'delete', ['operation.approved']],
    ['operation.approval_recorded', 'delete', []],
    ['operation.started', 'delete', ['operation.started']],
    ['operation.approved_and_started', 'restore', ['restore.approved', 'restore.started']],
    ['operation.wave_settled', 'delete', ['operation.wave_completed']],
    ['operation.wave_started', 'delete', []],
    ['operation.halted', 'delete', ['operation.halted']],
    ['operation.rolled_back', 'delete', ['operation.rolled_back']],
    ['operation.rollback_incomplete', 'delete', ['operation.rollback_incomplete']],
    ['operation.cancelled', 'restore', ['restore.cancelled']],
    ['operation.expired', 'purge', ['purge.expired']],
    ['operation.completed', 'delete', ['operation.completed']],
    ['operation.completed_with_failures', 'purge', ['purge.completed']],
    ['operation.halted', 'restore', ['restore.halted']],
    ['operation.halted', 'erase', ['purge.halted']],
    ['restore.planned', 'restore', ['restore.planned']],
    ['restore.rejected', 'restore', ['restore.rejected']],
    ['purge.planned', 'purge', ['purge.planned']],
    ['purge.rejected', null, ['purge.rejected']],
    ['operation.paused', 'delete', []],
    ['token.create', null, []],
    ['webhook.create', null, []],
  ])('%s of a %s operation → %j', (action, kind, types) => {
    expect(eventTypesOf(src(action, kind))).toEqual(types);
  });

  it('announces a freeze only when it changed', () => {
    expect(eventTypesOf(src('freeze.set', null, { changed: true }))).toEqual(['freeze.on']);
    expect(eventTypesOf(src('freeze.lift', null, { changed: true }))).toEqual(['freeze.off']);
    expect(eventTypesOf(src('freeze.set', null, { changed: false }))).toEqual([]);
  });

  it('filters by name or *, and names unknown names', () => {
    expect(matches(['*'], 'purge.halted')).toBe(true);
    expect(matches(['operation.halted'], 'restore.halted')).toBe(false);
    expect(unknownEventTypes(['*', 'freeze.on', 'operation.exploded'])).toEqual(['operation.exploded']);
  });

  it('builds one body per type with a stable id, the state after the event and links', () => {
    const [approved, started] = buildEvents(
      src('operation.approved_and_started', 'restore', { from: 'planned', to: 'running', wave: 0 }),
    );
    expect(approved!.id).toBe('evt_7_restore_approved');
    expect(started!.id).toBe('evt_7_restore_started');
    expect(started!.body).toMatchObject({
      type: 'restore.started',
      timestamp: '2026-11-30T02:00:00.000Z',
      data: { operationId: 'op_1', kind: 'restore', state: 'running', wave: 0, links: { self: '/v1/operations/op_1' } },
    });
    const [halted] = buildEvents(src('operation.halted', 'delete', { to: 'rolling_back', reason: 'probe failed' }));
    expect(halted!.body.data).toMatchObject({ haltReason: 'probe failed', state: 'rolling_back' });
    // Other ends that did not go as asked say why too: from the event, else the operation's.
    const reason = '3 item(s) could not be restored; see the item ledger';
    const [incomplete] = buildEvents(src('operation.rollback_incomplete', 'delete', { reason }));
    expect(incomplete!.body.data).toMatchObject({ haltReason: reason });
    expect(slackMessage(incomplete!.body).text).toContain(
      `rollback incomplete (delete app: 3 items, 2 tenants): ${reason}`,
    );
    const rolledBack = src('operation.rolled_back', 'delete', { restored: 3, failed: 0 });
    rolledBack.operation = { ...op('delete'), haltReason: 'rollback by bob: wrong IDs' };
    expect(buildEvents(rolledBack)[0]!.body.data).toMatchObject({ haltReason: 'rollback by bob: wrong IDs' });
    const [cancelled] = buildEvents(src('operation.cancelled', 'restore', { reason: 'not needed' }));
    expect(cancelled!.body.data).toMatchObject({ haltReason: 'not needed' });
    expect(buildEvents(src('operation.completed', 'delete'))[0]!.body.data).toMatchObject({ haltReason: null });
  });

  it("says why an operator's rollback ended as the operation did then: with the halt's cause, not the raw reason", () => {
    const cause = 'halted: wave 4 of 5: 5 consecutive item failures (limit 5); last error: HTTP 500';
    const said = `16 item(s) could not be restored; see the item ledger (${cause})`;
    const [incomplete] = buildEvents(
      src('operation.rollback_incomplete', 'delete', { reason: '16 item(s) could not be restored', haltReason: said }),
    );
    expect(incomplete!.body.data).toMatchObject({ haltReason: said });
    // As it was at the event, not as the operation reads when the event is sent (it may have moved on).
    const rolledBack = src('operation.rolled_back', 'delete', {
      restored: 20,
      failed: 0,
      haltReason: `rollback by sre-operator: downstream fixed, retry rollback (${cause})`,
    });
    rolledBack.operation = { ...op('delete'), haltReason: 'something later' };
    expect(buildEvents(rolledBack)[0]!.body.data).toMatchObject({
      haltReason: `rollback by sre-operator: downstream fixed, retry rollback (${cause})`,
    });
  });

  it('renders Slack messages with mrkdwn escaped', () => {
    const [halted] = buildEvents(src('operation.halted', 'delete', { to: 'halted', reason: '<!channel> & co' }));
    const m = slackMessage(halted!.body);
    expect(m.text).toContain('Operation op_1 halted');
    expect(m.text).toContain('&lt;!channel&gt; &amp; co');
    expect(m.text).not.toContain('<!channel>');
    expect(m.blocks).toHaveLength(2);
  });

  it('names a completed wave once in its Slack text ("wave 2 completed", not "wave 2 wave completed")', () => {
    const [wave] = buildEvents(src('operation.wave_settled', 'delete', { wave: 1 }));
    expect(wave!.body.type).toBe('operation.wave_completed');
    expect(slackMessage(wave!.body).text).toContain('Operation op_1 wave 2 completed (delete app');
  });

  it('says of a wave that bakes next that its probes are still to judge it (not "completed", then "halted")', () => {
    const [wave] = buildEvents(src('operation.wave_settled', 'delete', { wave: 0 }));
    const baking = { ...wave!.body, data: { ...wave!.body.data, state: 'baking' } };
    expect(slackMessage(baking).text).toContain(
      'Operation op_1 wave 1 done, baking (its health probes decide before the next wave)',
    );
  });
});
