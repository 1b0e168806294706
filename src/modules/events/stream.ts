// One client's event stream: a snapshot, then every audit event of the operation after the
// client's cursor and a progress frame (or the end), then live frames read from the database every
// POLL_MS, until the operation ends, the client goes away or the server shuts down. After the first,
// progress frames go out only when something changed, so at most 1000/POLL_MS per second.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queryable } from '../../lib/sql.ts';
import { readLive, readTransitions, streamEnds, type OpLive } from './feed.ts';
import type { QueueHolds } from '../operations/waiting.ts';
import { frame, HEARTBEAT, progressData, progressKey, snapshotData, transitionData } from './frames.ts';

export const POLL_MS = 500;
const iso = () => new Date().toISOString();
const UNAVAILABLE =
  'The operation cannot be read (the database does not answer): nothing new is shown until it is back. Nothing is lost; this stream goes on by itself, and the operation moves again once its workers reach the database.';
/** Audit events read per statement while catching up. */
const PAGE = 200;

export interface StreamOptions {
  db: Queryable;
  first: OpLive;
  cursor: number;
  out: Writable;
  signal: AbortSignal;
  heartbeatMs: number;
  /** Called at least every heartbeatMs while the stream is open (keeps its per-token slot). */
  renew(): Promise<void>;
  log: { warn(obj: object, msg: string): void };
  /** What holds an operation in a state on the queue, as this process sees it (app.queueHolds). */
  holdsOf?: (state: string, lastProgressAt: Date | null) => Promise<QueueHolds>;
}

export async function streamOperation(o: StreamOptions): Promise<void> {
  let op = o.first;
  let cursor = o.cursor;
  let lastWrite = Date.now();
  let lastRenew = Date.now();
  const write = async (chunk: string) => {
    lastWrite = Date.now();
    // A slow reader: wait for it (or for the end) instead of buffering without bound.
    if (!o.out.write(chunk) && !o.signal.aborted) await once(o.out, 'drain', { signal: o.signal }).catch(() => {});
  };
  await write(frame(cursor, 'snapshot', snapshotData(op)));
  // Null: the first pass sends a progress frame after the replay even if nothing moved, so that a
  // client resuming from a cursor learns where the replay ends (the CLI's watch decides there).
  let sentProgress: string | null = null;
  let sentProbesAt = op.probes?.at ?? null;
  let failing = false;
  /** Since when the operation cannot be read (PostgreSQL away), or null. */
  let unreadSince: string | null = null;
  while (!o.signal.aborted) {
    try {
      // Every event up to op.lastSeq committed before op was read (the audit event commits with the
      // change it records, in seq order), so reading up to it leaves no gap behind the cursor.
      while (cursor < op.lastSeq && !o.signal.aborted) {
        const rows = await readTransitions(o.db, op.id, cursor, PAGE);
        if (rows.length === 0) break;
        for (const t of rows) {
          await write(frame(t.seq, 'transition', transitionData(t)));
          cursor = t.seq;
        }
      }
      const key = progressKey(op);
      if (key !== sentProgress) {
        await write(frame(cursor, 'progress', progressData(op)));
        sentProgress = key;
      }
      if (op.probes && op.probes.at !== sentProbesAt) {
        await write(frame(cursor, 'probes', op.probes));
        sentProbesAt = op.probes.at;
      }
      if (streamEnds(op.state)) {
        await write(frame(cursor, 'end', { state: op.state }));
        return;
      }
      failing = false;
    } catch (err) {
      // The database went away for a moment: keep the client and try again on the next tick.
      if (!failing) o.log.warn({ err, operationId: op.id }, 'event stream read failed; retrying');
      failing = true;
    }
    const now = Date.now();
    if (now - lastWrite >= o.heartbeatMs) await write(HEARTBEAT);
    if (now - lastRenew >= o.heartbeatMs / 2) {
      lastRenew = now;
      await o.renew().catch(() => {});
    }
    await sleep(POLL_MS, undefined, { signal: o.signal }).catch(() => {});
    if (o.signal.aborted) return;
    const read = await readLive(o.db, op.id, o.holdsOf).then(
      (live) => live,
      (err: unknown) => err as Error,
    );
    if (!(read instanceof Error)) {
      op = read ?? op;
      // Back: said once, then the frames that changed meanwhile follow as usual.
      if (unreadSince !== null) await write(frame(cursor, 'available', { since: unreadSince, at: iso() }));
      unreadSince = null;
    } else if (unreadSince === null) {
      // The stream went on in silence while PostgreSQL was away: `watch` showed its last line for
      // the whole outage while GETs said 503 (a trial). Said once; the stream stays open and goes on.
      unreadSince = iso();
      o.log.warn({ err: read, operationId: op.id }, 'event stream cannot read the operation; retrying');
      await write(frame(cursor, 'unavailable', { since: unreadSince, detail: UNAVAILABLE }));
    }
  }
}
