// GET /v1/operations/{id} serializes a view once per read that several requests share
// (operations/view-json.ts), but never gives a request JSON made with another request's inputs:
// what the queue holds the operation on, as this process sees it, and the clock-dependent parts.
import { describe, expect, it } from 'vitest';
import { sendView } from '../../src/modules/operations/view-json.ts';
import { NO_HOLDS } from '../../src/modules/operations/waiting.ts';

const at = new Date('2026-12-03T09:00:00.000Z');
const op = {
  id: 'op_view_json',
  action: 'delete',
  targetType: 'app',
  mode: 'soft',
  state: 'running',
  reason: 'r',
  ticket: 'CHG-1',
  requestedByName: 'ci',
  itemCount: 2,
  tenantCount: 1,
  requiresBreakGlass: false,
  currentWave: 0,
  haltReason: null,
  createdAt: at,
  updatedAt: at,
  // No outcome for a minute: the view says it is waiting for progress.
  progressAt: null,
} as never;

/** A reply that serializes with JSON.stringify and records what it was asked to serialize and send. */
function fakeReply() {
  const r = {
    serialized: 0,
    sent: undefined as unknown,
    serialize(x: unknown) {
      r.serialized += 1;
      return JSON.stringify(x);
    },
    type: () => r,
    serializer: () => r,
    send(body: unknown) {
      r.sent = body;
      return r;
    },
  };
  return r;
}

describe('sendView', () => {
  it('requests sharing one read with the same inputs share its JSON; other inputs get their own', () => {
    const read = { op, progress: undefined, unfinished: undefined, drills: undefined };
    const a = fakeReply();
    const b = fakeReply();
    sendView(a as never, read, NO_HOLDS);
    sendView(b as never, read, NO_HOLDS);
    expect(a.serialized + b.serialized).toBe(1);
    expect(b.sent).toBe(a.sent);
    expect(JSON.parse(a.sent as string)).toMatchObject({ id: 'op_view_json', state: 'running', waiting: null });

    // This process lost Redis meanwhile: the next request says so, from JSON made for it.
    const down = { ...NO_HOLDS, queueDownSince: at };
    const c = fakeReply();
    sendView(c as never, read, down);
    expect(c.serialized).toBe(1);
    expect(JSON.parse(c.sent as string).waiting).toMatchObject({ on: 'redis', since: at.toISOString() });

    // Another read (a later query) is never answered with the JSON of an earlier one.
    const later = { ...read, op: { ...(op as object), state: 'paused' } as never };
    const d = fakeReply();
    sendView(d as never, later, NO_HOLDS);
    expect(JSON.parse(d.sent as string).state).toBe('paused');
  });
});
