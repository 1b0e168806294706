// Following one operation to an outcome over its event stream (GET /v1/operations/{id}/events):
// the state after every frame decides whether to go on waiting or which exit code to end with
// (exit-codes.ts), and a deadline ends the wait with 13. Reconnects resume from the last frame's
// id, so a dropped connection loses no transition.
import { EXIT, exitForState, type ExitCode } from './exit-codes.ts';
import type { ApiClient } from './http.ts';
import { followSse } from './sse.ts';
import type { OpStatus, View, WaveProgress } from './watch-view.ts';
import { waitingText, type Waiting } from './output.ts';

export interface WatchResult {
  operationId: string;
  state: string;
  haltReason: string | null;
  exitCode: ExitCode;
  timedOut: boolean;
  /** The cursor of the last frame seen: `blastgate watch --after` resumes from it. */
  lastEventId: string | null;
  /** When the server was last heard from (a frame or a heartbeat); null: never. */
  lastHeardAt: number | null;
  waves: WaveProgress[];
}

export interface WatchOptions {
  client: ApiClient;
  operationId: string;
  view: View;
  /** Give up waiting after this long (exit 13); undefined: no limit. */
  timeoutMs?: number;
  after?: string;
  idleTimeoutMs?: number;
  /** First reconnect delay (doubling per failure); tests shorten it. */
  reconnectDelayMs?: number;
}

/** Characters of a restore's last error on watch's status line (`status` prints it whole). */
const HELD_ERROR_CHARS = 120;

/** The server's reason a running operation does not move, as a few words; null when it moves. */
export function heldText(d: Record<string, unknown>): string | null {
  const waiting = d.waiting as Waiting | null | undefined;
  if (waiting) return waitingText(waiting, HELD_ERROR_CHARS);
  const throttled = d.throttled as { cap: string; until: string } | null | undefined;
  return throttled ? `held back by ${throttled.cap} until ${throttled.until}` : null;
}

export async function watchOperation(o: WatchOptions): Promise<WatchResult> {
  const status: OpStatus = { state: 'unknown', currentWave: null, haltReason: null, bakeUntil: null, skewMs: 0 };
  let waves: WaveProgress[] = [];
  let exit: ExitCode | null = null;
  let lastId: string | undefined = o.after;
  let heardAt: number | null = null;
  // A stream resumed from a cursor (--after, or a reconnect) opens with the state now and then
  // replays what was missed: its snapshot decides nothing, the progress or end frame after the
  // replay does. The watch ended on the snapshot of an operation that had rolled back meanwhile
  // and never printed the halt (a trial).
  let resumed = o.after !== undefined;
  const ctl = new AbortController();
  let timedOut = false;
  const timer =
    o.timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          timedOut = true;
          ctl.abort();
        }, o.timeoutMs);

  const apply = (d: Record<string, unknown>) => {
    if (typeof d.state === 'string') status.state = d.state;
    if ('currentWave' in d) status.currentWave = (d.currentWave as number | null) ?? null;
    if ('waveCount' in d) status.waveCount = (d.waveCount as number | null) ?? null;
    if ('haltReason' in d) status.haltReason = (d.haltReason as string | null) ?? null;
    if ('bakeUntil' in d) status.bakeUntil = (d.bakeUntil as string | null) ?? null;
    if ('throttled' in d || 'waiting' in d) status.held = heldText(d);
    if (typeof d.serverTime === 'string') status.skewMs = Date.parse(d.serverTime) - Date.now();
    if (Array.isArray(d.waves)) waves = d.waves as WaveProgress[];
  };

  try {
    await followSse({
      client: o.client,
      path: `/v1/operations/${encodeURIComponent(o.operationId)}/events`,
      ...(o.after ? { after: o.after } : {}),
      ...(o.idleTimeoutMs ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
      ...(o.reconnectDelayMs ? { delayMs: o.reconnectDelayMs, maxDelayMs: o.reconnectDelayMs } : {}),
      // With --timeout the deadline ends the wait (13), however many reconnects fail before it: a
      // watch with --timeout 30m gave up with exit 1 after ~250 s of an outage (a trial). Without
      // one, the reconnects are bounded (followSse's default).
      ...(o.timeoutMs !== undefined ? { maxAttempts: Number.POSITIVE_INFINITY } : {}),
      signal: ctl.signal,
      onData: () => void (heardAt = Date.now()),
      onReconnect: (n, why) => {
        resumed = lastId !== undefined;
        // A stream never opened was not "dropped".
        const what = heardAt === null ? 'event stream not reachable' : 'event stream dropped';
        o.view.note(`${what} (${why}); reconnecting (attempt ${n})`);
      },
      onFrame(frame) {
        lastId = frame.id ?? lastId;
        let data: Record<string, unknown>;
        try {
          data = JSON.parse(frame.data) as Record<string, unknown>;
        } catch {
          return false;
        }
        if (frame.event === 'snapshot') {
          apply({ ...(data.operation as Record<string, unknown>), serverTime: data.serverTime, waves: data.waves });
        } else if (frame.event === 'transition') {
          // A transition's `state` is the state that event moved to, not the state now: a fresh
          // stream replays the whole history, and a pause long since resumed ended the wait with
          // 12 "is paused" (a new-user trial). The state now comes with snapshot, progress and end
          // frames (a live change of state always sends a progress frame).
          const { state: _then, ...now } = data;
          apply(now);
        } else if (frame.event === 'progress' || frame.event === 'end') {
          apply(data);
        } else if (frame.event === 'unavailable') {
          o.view.note(`the server cannot read the operation since ${String(data.since)} (database away); waiting`);
        } else if (frame.event === 'available') {
          o.view.note(`the server reads the operation again (since ${String(data.at)})`);
        }
        o.view.frame(frame.event, frame.id, data, status);
        if (frame.event === 'snapshot' || frame.event === 'progress') o.view.waves(waves, status);
        // Transitions replay the past; a live change of state always comes with a progress frame.
        const decides = frame.event === 'progress' || frame.event === 'end' || (frame.event === 'snapshot' && !resumed);
        exit = decides ? exitForState(status.state) : null;
        return exit !== null;
      },
    });
  } finally {
    clearTimeout(timer);
  }
  // The stream ended (`end`) with a state we keep waiting on: cannot happen by contract, but
  // report it rather than loop.
  const code: ExitCode = exit ?? (timedOut ? EXIT.timedOut : (exitForState(status.state) ?? EXIT.error));
  return {
    operationId: o.operationId,
    state: status.state,
    haltReason: status.haltReason,
    exitCode: code,
    timedOut: exit === null && timedOut,
    lastEventId: lastId ?? null,
    lastHeardAt: heardAt,
    waves,
  };
}
