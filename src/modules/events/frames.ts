// Server-sent event frames (https://html.spec.whatwg.org/multipage/server-sent-events.html): one
// `id`, one `event` and one `data` line (JSON has no raw newlines), a blank line to end the frame.
import type { OpLive, Transition } from './feed.ts';

export const frame = (id: number, event: string, data: unknown) =>
  `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** A comment line: keeps proxies and clients from timing an idle stream out. */
export const HEARTBEAT = ': ping\n\n';

export function snapshotData(op: OpLive) {
  const { waves, probes, lastSeq: _lastSeq, ...operation } = op;
  return { operation, waves, probes, serverTime: new Date().toISOString() };
}

/**
 * A transition as it was then: the state it moved to (null for an event that moved none) and its
 * own reason. The operation's present state, halt reason and bake went with every replayed event,
 * so a watch that caught up printed the first pause with the second pause's reason (a trial).
 */
export function transitionData(t: Transition) {
  const own = (k: string) => (typeof t.detail[k] === 'string' ? t.detail[k] : null);
  // A reason is a halt reason only where the operation keeps one (lifecycle: why it stopped): a
  // start's or a resume's reason went out as `haltReason` and `watch` printed "halt: Change window open".
  // An event whose reason led to a longer haltReason (an operator's rollback of a halted operation
  // keeps the halt's cause: lifecycle haltCause) records that one too: the frame says what the
  // operation said then.
  const stopped = t.to !== null && KEEPS_A_REASON.has(t.to);
  const haltReason = stopped ? (own('haltReason') ?? own('reason')) : null;
  return { ...t, state: t.to, haltReason, bakeUntil: own('bakeUntil') };
}

/** States in which an operation's haltReason says why it stopped (null in the others). */
const KEEPS_A_REASON = new Set([
  'paused',
  'halted',
  'rolling_back',
  'rolled_back',
  'rollback_incomplete',
  'cancelled',
  'expired',
  'completed_with_failures',
  'failed',
  'rejected',
]);

/** The part of the progress that, when it changes, is worth a frame (serverTime is not). */
export function progressKey(op: OpLive) {
  return JSON.stringify([
    op.state,
    op.currentWave,
    op.bakeUntil,
    op.haltReason,
    op.waves,
    op.throttled,
    op.waiting,
    op.refused,
  ]);
}

export function progressData(op: OpLive) {
  const counts = { items: 0, done: 0, failed: 0, pending: 0, restored: 0, restoreFailed: 0, restoring: 0 };
  for (const w of op.waves) {
    counts.items += w.items;
    counts.done += w.done;
    counts.failed += w.failed;
    counts.pending += w.pending;
    counts.restored += w.restored;
    counts.restoreFailed += w.restoreFailed;
    counts.restoring += w.restoring;
  }
  return {
    state: op.state,
    currentWave: op.currentWave,
    bakeUntil: op.bakeUntil,
    haltReason: op.haltReason,
    throttled: op.throttled,
    waiting: op.waiting,
    refused: op.refused,
    waves: op.waves,
    counts,
    serverTime: new Date().toISOString(),
  };
}
