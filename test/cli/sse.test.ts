// The CLI's SSE reader: the frame parser against the WHATWG rules (chunks split anywhere, CRLF,
// comments, multi-line data, ids), and the follower against a tiny real SSE server that drops
// the connection mid-stream: the reconnect carries Last-Event-ID and no event is lost or repeated.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/cli/http.ts';
import { followSse, SseParser, type SseFrame } from '../../src/cli/sse.ts';
import { heldText, watchOperation } from '../../src/cli/watch.ts';
import { barView, jsonView, lineView } from '../../src/cli/watch-view.ts';
import { EXIT } from '../../src/cli/exit-codes.ts';
import { outcomeLine } from '../../src/cli/context.ts';
import { waitingText } from '../../src/cli/output.ts';

describe('SseParser', () => {
  const STREAM =
    ': ping\r\nid: 1\r\nevent: snapshot\r\ndata: {"a":1}\r\n\r\n' +
    'id: 2\nevent: transition\ndata: line one\ndata: line two\n\n' +
    'data: no id or event\n\n' +
    'retry: 2500\nid: 3\nevent: end\ndata:{"state":"completed"}\r\rtrailing';

  const expected: SseFrame[] = [
    { event: 'snapshot', data: '{"a":1}', id: '1' },
    { event: 'transition', data: 'line one\nline two', id: '2' },
    { event: 'message', data: 'no id or event', id: '2' },
    { event: 'end', data: '{"state":"completed"}', id: '3' },
  ];

  it('parses a whole stream', () => {
    const p = new SseParser();
    expect(p.push(STREAM)).toEqual(expected);
    expect(p.retryMs).toBe(2500);
    expect(p.lastId).toBe('3');
  });

  it('gives the same frames however the stream is split into chunks (CRLF split included)', () => {
    for (let size = 1; size <= 7; size++) {
      const p = new SseParser();
      const frames: SseFrame[] = [];
      for (let i = 0; i < STREAM.length; i += size) frames.push(...p.push(STREAM.slice(i, i + size)));
      expect(frames, `chunk size ${size}`).toEqual(expected);
    }
  });

  it('moves the resume cursor only when a frame ends: a connection cut inside one resumes before it', () => {
    const p = new SseParser('11');
    expect(p.push('id: 12\nevent: transition\n')).toEqual([]);
    // Cut here, the reconnect's Last-Event-ID skipped transition 12 (a probe).
    expect(p.lastId).toBe('11');
    expect(p.push('data: {}\n\n')).toEqual([{ event: 'transition', data: '{}', id: '12' }]);
    expect(p.lastId).toBe('12');
  });

  it('ignores comments and frames without data, and ids with NUL', () => {
    const p = new SseParser('7');
    expect(p.push(': hello\n\nevent: x\n\nid: a\0b\ndata: d\n\n')).toEqual([{ event: 'message', data: 'd', id: '7' }]);
  });
});

// A fake of contract §1 for one operation: `events` are served after the Last-Event-ID the client
// sends; the first connection is cut after `cutAfter` events.
function fakeEventServer(events: { id: number; event: string; data: unknown }[], cutAfter: number) {
  const seen: (string | undefined)[] = [];
  let connections = 0;
  const server: Server = createServer((req, res: ServerResponse) => {
    if (req.headers.authorization !== 'Bearer tok') {
      res.writeHead(401, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ code: 'UNAUTHENTICATED', message: 'no token' }));
    }
    if (!req.url?.startsWith('/v1/operations/op_1/events')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ code: 'NOT_FOUND', message: 'Operation op_2 not found' }));
    }
    connections++;
    const last = req.headers['last-event-id'] as string | undefined;
    seen.push(last);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const after = last ? Number(last) : 0;
    const todo = events.filter((e) => e.id > after);
    const sent = connections === 1 ? todo.slice(0, cutAfter) : todo;
    const body =
      ': ping\n\n' + sent.map((e) => `id: ${e.id}\nevent: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`).join('');
    // The first connection drops mid-operation, once what it sent has left.
    if (connections === 1) res.write(body, () => res.destroy());
    else res.end(body);
  });
  return { server, seen, connections: () => connections };
}

describe('followSse / watchOperation against a real SSE server', () => {
  const op = { id: 'op_1', state: 'running', currentWave: 0, waveCount: 2, haltReason: null, bakeUntil: null };
  const events = [
    {
      id: 10,
      event: 'snapshot',
      data: { operation: op, waves: [], probes: null, serverTime: new Date().toISOString() },
    },
    { id: 11, event: 'transition', data: { seq: 11, action: 'operation.wave_started', state: 'running', wave: 0 } },
    { id: 12, event: 'progress', data: { state: 'running', currentWave: 0, waves: [], counts: {} } },
    { id: 13, event: 'transition', data: { seq: 13, action: 'operation.wave_settled', state: 'baking', wave: 0 } },
    { id: 14, event: 'transition', data: { seq: 14, action: 'operation.completed', state: 'completed', wave: 1 } },
    { id: 15, event: 'end', data: { state: 'completed' } },
  ];
  let fake: ReturnType<typeof fakeEventServer>;
  let client: ApiClient;
  beforeAll(async () => {
    fake = fakeEventServer(events, 3);
    await new Promise<void>((r) => fake.server.listen(0, '127.0.0.1', r));
    client = new ApiClient({ url: `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`, token: 'tok' });
  });
  afterAll(() => new Promise<void>((r) => fake.server.close(() => r())));

  it('reconnects with Last-Event-ID after a drop and misses nothing', async () => {
    const ids: string[] = [];
    const reconnects: string[] = [];
    const outcome = await followSse({
      client,
      path: '/v1/operations/op_1/events',
      delayMs: 10,
      onFrame: (f) => void ids.push(`${f.id}:${f.event}`),
      onReconnect: (_n, why) => reconnects.push(why),
    });
    expect(outcome).toBe('end');
    expect(fake.seen).toEqual([undefined, '12']);
    expect(reconnects).toHaveLength(1);
    expect(ids).toEqual(['10:snapshot', '11:transition', '12:progress', '13:transition', '14:transition', '15:end']);
  });

  it('watchOperation ends with the exit code of the final state and prints JSON per event', async () => {
    const lines: string[] = [];
    const r = await watchOperation({ client, operationId: 'op_1', view: jsonView((s) => lines.push(s)) });
    expect(r.exitCode).toBe(EXIT.ok);
    expect(r.state).toBe('completed');
    for (const l of lines) expect(() => JSON.parse(l) as unknown).not.toThrow();
  });

  it('stops at the first frame whose state needs no more waiting (paused → 12)', async () => {
    const f = fakeEventServer(
      [
        { id: 1, event: 'snapshot', data: { operation: { ...op, state: 'running' }, waves: [] } },
        { id: 2, event: 'transition', data: { action: 'operation.paused', state: 'paused', haltReason: 'x' } },
        // A live change of state always comes with a progress frame (the stream's progressKey).
        { id: 2, event: 'progress', data: { state: 'paused', currentWave: 0, haltReason: 'x', waves: [] } },
      ],
      99,
    );
    await new Promise<void>((r) => f.server.listen(0, '127.0.0.1', r));
    try {
      const c = new ApiClient({ url: `http://127.0.0.1:${(f.server.address() as AddressInfo).port}`, token: 'tok' });
      const r = await watchOperation({ client: c, operationId: 'op_1', view: jsonView(() => undefined) });
      expect(r).toMatchObject({ exitCode: EXIT.paused, state: 'paused', haltReason: 'x', lastEventId: '2' });
    } finally {
      await new Promise<void>((r) => f.server.close(() => r()));
    }
  });

  it("a replayed history's pause is not the state now: a resumed operation is followed, not reported paused", async () => {
    // A fresh stream replays every audit event; each transition's `state` is the state that event
    // moved to. `watch` on a running operation once paused and resumed exited 12 "is paused".
    const frames = [
      { id: 1, event: 'snapshot', data: { operation: { ...op, state: 'running' }, waves: [] } },
      { id: 5, event: 'transition', data: { action: 'operation.paused', state: 'paused', haltReason: null } },
      { id: 6, event: 'transition', data: { action: 'operation.resumed', state: 'running', haltReason: null } },
    ];
    // Then nothing: the operation runs on.
    const live = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(frames.map((e) => `id: ${e.id}\nevent: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`).join(''));
    });
    await new Promise<void>((r) => live.listen(0, '127.0.0.1', r));
    try {
      const c = new ApiClient({ url: `http://127.0.0.1:${(live.address() as AddressInfo).port}`, token: 'tok' });
      const r = await watchOperation({
        client: c,
        operationId: 'op_1',
        view: jsonView(() => undefined),
        timeoutMs: 500,
      });
      expect(r).toMatchObject({ exitCode: EXIT.timedOut, state: 'running', lastEventId: '6' });
    } finally {
      live.closeAllConnections();
      await new Promise<void>((r) => live.close(() => r()));
    }
  });

  it('with --timeout, an event stream that keeps failing is waited for until the timeout (13), not given up on (1)', async () => {
    // The API answers 503 on every connection (an outage). With 20 reconnects at 5 ms, the watch
    // gave up with STREAM_FAILED (exit 1) long before its timeout (a trial: after ~250 s of 30 min).
    let tries = 0;
    const down = createServer((_req, res) => {
      tries++;
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ code: 'DEPENDENCY_UNAVAILABLE', message: 'Redis could not be reached' }));
    });
    await new Promise<void>((r) => down.listen(0, '127.0.0.1', r));
    try {
      const c = new ApiClient({ url: `http://127.0.0.1:${(down.address() as AddressInfo).port}`, token: 'tok' });
      const notes: string[] = [];
      const view = { ...jsonView(() => undefined), note: (t: string) => void notes.push(t) };
      const r = await watchOperation({ client: c, operationId: 'op_1', view, timeoutMs: 1_500, reconnectDelayMs: 5 });
      expect(r).toMatchObject({ exitCode: EXIT.timedOut });
      expect(tries).toBeGreaterThan(20);
      // It never connected: not "dropped".
      expect(notes[0]).toMatch(/^event stream not reachable \(.*\); reconnecting \(attempt 1\)$/);
    } finally {
      down.closeAllConnections();
      await new Promise<void>((r) => down.close(() => r()));
    }
  });

  it("after a reconnect, an ended operation's snapshot does not end the watch before the replay of what it missed", async () => {
    // The server's contract: on every connection a snapshot (the state now), then the transitions
    // after Last-Event-ID, then a progress frame (or the end). The watch ended on the second
    // snapshot's rolled_back and dropped the halt and the rollback it had not seen (a trial).
    const running = { ...op, state: 'running' };
    const ended = { ...op, state: 'rolled_back', haltReason: 'wave 1 of 2: failure rate 50% over 10%' };
    const sse = (fs: { id: number; event: string; data: unknown }[]) =>
      fs.map((e) => `id: ${e.id}\nevent: ${e.event}\ndata: ${JSON.stringify(e.data)}\n\n`).join('');
    let connections = 0;
    const seen: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      connections++;
      seen.push(req.headers['last-event-id'] as string | undefined);
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (connections === 1) {
        const first = [
          { id: 3, event: 'snapshot', data: { operation: running, waves: [] } },
          { id: 4, event: 'transition', data: { seq: 4, action: 'operation.wave_started', state: 'running' } },
          { id: 4, event: 'progress', data: { state: 'running', currentWave: 1, haltReason: null, waves: [] } },
        ];
        return res.write(sse(first), () => res.destroy());
      }
      res.end(
        sse([
          { id: 4, event: 'snapshot', data: { operation: ended, waves: [] } },
          { id: 5, event: 'transition', data: { seq: 5, action: 'operation.halted', state: 'rolling_back' } },
          { id: 6, event: 'transition', data: { seq: 6, action: 'operation.rolled_back', state: 'rolled_back' } },
          { id: 6, event: 'end', data: { state: 'rolled_back' } },
        ]),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const c = new ApiClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 'tok' });
      const lines: string[] = [];
      const r = await watchOperation({ client: c, operationId: 'op_1', view: jsonView((l) => lines.push(l)) });
      expect(seen).toEqual([undefined, '4']);
      expect(r).toMatchObject({ exitCode: EXIT.stopped, state: 'rolled_back', lastEventId: '6' });
      const actions = lines.map((l) => (JSON.parse(l) as { data: { action?: string } }).data.action);
      expect(actions).toContain('operation.halted');
      expect(actions).toContain('operation.rolled_back');
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('an HTTP error (404, 401) is not retried: it carries the server code', async () => {
    await expect(
      followSse({ client, path: '/v1/operations/op_2/events', onFrame: () => undefined }),
    ).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404, exitCode: EXIT.error });
    const bad = new ApiClient({ url: client.conn.url, token: 'nope' });
    await expect(
      followSse({ client: bad, path: '/v1/operations/op_1/events', onFrame: () => undefined }),
    ).rejects.toMatchObject({ code: 'UNAUTHENTICATED', status: 401 });
  });

  it('times out waiting (13) when the stream stays quiet', async () => {
    const quiet = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`id: 1\nevent: snapshot\ndata: ${JSON.stringify({ operation: { ...op, state: 'planned' } })}\n\n`);
    });
    await new Promise<void>((r) => quiet.listen(0, '127.0.0.1', r));
    try {
      const c = new ApiClient({ url: `http://127.0.0.1:${(quiet.address() as AddressInfo).port}`, token: 'tok' });
      const r = await watchOperation({
        client: c,
        operationId: 'op_1',
        view: jsonView(() => undefined),
        timeoutMs: 1_200,
      });
      expect(r).toMatchObject({ exitCode: EXIT.timedOut, timedOut: true, state: 'planned' });
      // Heard from once, then silent: the state may be old, and the line says how old (a trial
      // read "is still planned" from a hung server while the operation had completed).
      expect(outcomeLine(r)).toMatch(
        /^Timed out waiting: op_1 is still planned: it waits for an approval \(blastgate approve\), then a start \(last heard from the server [12] s ago\)\.$/,
      );
    } finally {
      quiet.closeAllConnections();
      await new Promise<void>((r) => quiet.close(() => r()));
    }
  });

  it('a timeout before any frame arrived says the state is not known (not "is still unknown")', async () => {
    const mute = createServer(() => undefined); // accepts, never answers
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    try {
      const c = new ApiClient({ url: `http://127.0.0.1:${(mute.address() as AddressInfo).port}`, token: 'tok' });
      const r = await watchOperation({
        client: c,
        operationId: 'op_1',
        view: jsonView(() => undefined),
        timeoutMs: 300,
      });
      expect(r).toMatchObject({ exitCode: EXIT.timedOut, timedOut: true });
      expect(outcomeLine(r)).toBe(
        'Timed out waiting: no event of op_1 arrived; its state is not known (blastgate status op_1).',
      );
    } finally {
      mute.closeAllConnections();
      await new Promise<void>((r) => mute.close(() => r()));
    }
  });
});

describe('watch lines of transitions', () => {
  const lines = (data: Record<string, unknown>) => {
    const out: string[] = [];
    const status = { state: 'completed', currentWave: 1, waveCount: 2, haltReason: null, bakeUntil: null, skewMs: 0 };
    lineView((s) => out.push(s)).frame('transition', '1', { at: 'T', actor: 'requester-1', ...data }, status);
    return out.join('');
  };

  it("show each event's own move, not the state the operation is in now (an ended operation's history)", () => {
    expect(lines({ action: 'operation.planned', to: null })).toBe('T operation.planned by requester-1\n');
    // A refused command is in the history too, and says so.
    expect(lines({ action: 'POST /v1/operations/:id/approve', outcome: 'refused', to: null })).toBe(
      'T POST /v1/operations/:id/approve by requester-1 (refused)\n',
    );
    expect(lines({ action: 'operation.approved', from: 'planned', to: 'approved' })).toBe(
      'T operation.approved by requester-1 → approved\n',
    );
    expect(lines({ action: 'operation.completed', from: 'running', to: 'completed', wave: 1 })).toBe(
      'T operation.completed by requester-1 → completed · wave 2/2\n',
    );
    // An earlier wave's event names its own wave, not the one the operation is on now beside it,
    // and not the reason the operation halted later.
    const halted = {
      state: 'halted',
      currentWave: 3,
      waveCount: 4,
      haltReason: 'wave 4 of 4: x',
      bakeUntil: null,
      skewMs: 0,
    };
    const out: string[] = [];
    const view = lineView((s) => out.push(s));
    view.frame(
      'transition',
      '1',
      { at: 'T', actor: 'system', action: 'operation.wave_started', to: 'running', wave: 1 },
      halted,
    );
    view.frame(
      'transition',
      '2',
      { at: 'T', actor: 'system', action: 'operation.halted', to: 'halted', wave: 3 },
      halted,
    );
    expect(out).toEqual([
      'T operation.wave_started by system → running · wave 2/4\n',
      'T operation.halted by system → halted · wave 4/4 · halt: wave 4 of 4: x\n',
    ]);
  });
});

describe('watch: why a running operation does not move', () => {
  it("prints the server's waiting or throttled reason on the progress line, and drops it once it moves", () => {
    const out: string[] = [];
    const view = lineView((x) => out.push(x));
    const status = { state: 'running', currentWave: 1, waveCount: 2, haltReason: null, bakeUntil: null, skewMs: 0 };
    const waves = [{ wave: 1, items: 10, done: 4, failed: 0 }] as never;
    view.waves(waves, {
      ...status,
      held: heldText({ throttled: { cap: 'maxItemsPerMinute', until: 'U' }, waiting: null }),
    });
    view.waves(waves, { ...status, held: heldText({ throttled: null, waiting: { on: 'redis', since: 'S' } }) });
    view.waves(waves, { ...status, held: heldText({ throttled: null, waiting: null }) });
    expect(out).toEqual([
      'progress running · wave 2/2 · held back by maxItemsPerMinute until U · w2 4/10\n',
      'progress running · wave 2/2 · waiting for the work queue (Redis) since S · w2 4/10\n',
      'progress running · wave 2/2 · w2 4/10\n',
    ]);
  });

  it('does not print a progress line again while nothing on it changed (an outage reconnecting)', () => {
    const out: string[] = [];
    const view = lineView((x) => out.push(x));
    const status = { state: 'running', currentWave: 0, waveCount: 2, haltReason: null, bakeUntil: null, skewMs: 0 };
    const at = (done: number) => [{ wave: 0, items: 10, done, failed: 0 }] as never;
    view.waves(at(4), status);
    view.note('event stream dropped (socket hang up); reconnecting (attempt 1)');
    view.waves(at(4), status);
    view.waves(at(4), status);
    view.waves(at(5), status);
    view.waves(at(4), status);
    expect(out).toEqual([
      'progress running · wave 1/2 · w1 4/10\n',
      'event stream dropped (socket hang up); reconnecting (attempt 1)\n',
      'progress running · wave 1/2 · w1 5/10\n',
      'progress running · wave 1/2 · w1 4/10\n',
    ]);
  });

  it('does not print the wait read now beside a transition, an event of the past', () => {
    const out: string[] = [];
    const view = lineView((x) => out.push(x));
    // Replayed on connecting: the rollback began before any restore failed, and waits for retries now.
    const now = {
      state: 'rolling_back',
      currentWave: null,
      waveCount: 1,
      haltReason: 'rollback by t-operator: undo',
      bakeUntil: null,
      skewMs: 0,
      held: heldText({ throttled: null, waiting: { on: 'restore_retry', since: 'S', items: 7, nextRetryAt: 'N' } }),
    };
    view.frame(
      'transition',
      '32',
      { at: 'T', actor: 't-operator', action: 'operation.rollback_started', to: 'rolling_back' },
      now,
    );
    view.waves([{ wave: 0, items: 4, done: 4, failed: 0, pending: 0 }], now);
    expect(out).toEqual([
      'T operation.rollback_started by t-operator → rolling_back · rollback by t-operator: undo\n',
      'progress rolling_back · rollback by t-operator: undo · waiting to retry 7 failed restores, the next at N · w1 4/4\n',
    ]);
  });
});

describe('watch and status: a rollback waiting for its failed restores to be retried', () => {
  const waiting = {
    on: 'restore_retry',
    since: '2026-12-02T09:47:54.710Z',
    detail: 'Restores that failed for a reason that may pass …',
    items: 4,
    // Ahead of now (one already due reads differently: below).
    nextRetryAt: '2099-12-02T09:47:58.710Z',
    lastError: 'HTTP 503 Service Unavailable (after 4 attempts)',
  };

  it('prints how many wait, when the next retry is due and the last error, not "waiting for restore_retry"', () => {
    const out: string[] = [];
    const view = lineView((x) => out.push(x));
    const status = {
      state: 'rolling_back',
      currentWave: 0,
      waveCount: 1,
      haltReason: null,
      bakeUntil: null,
      skewMs: 0,
    };
    const waves = [{ wave: 0, items: 4, done: 4, failed: 0, pending: 0, restored: 0, restoreFailed: 0 }];
    view.waves(waves, { ...status, held: heldText({ throttled: null, waiting }) });
    view.waves(waves, { ...status, held: heldText({ throttled: null, waiting: { ...waiting, items: 1 } }) });
    expect(out).toEqual([
      'progress rolling_back · wave 1/1 · waiting to retry 4 failed restores, the next at 2099-12-02T09:47:58.710Z' +
        ' (last error: HTTP 503 Service Unavailable (after 4 attempts)) · w1 4/4\n',
      'progress rolling_back · wave 1/1 · waiting to retry 1 failed restore, the next at 2099-12-02T09:47:58.710Z' +
        ' (last error: HTTP 503 Service Unavailable (after 4 attempts)) · w1 4/4\n',
    ]);
  });

  it('says a retry already due is under way since then, not "the next at" a time gone by (trial L)', () => {
    const due = { ...waiting, nextRetryAt: '2026-12-02T09:47:58.710Z' };
    expect(waitingText(due, Infinity, () => Date.parse('2026-12-02T09:48:15.000Z'))).toBe(
      'waiting to retry 4 failed restores, retrying since 2026-12-02T09:47:58.710Z (due then, none answered yet)' +
        ' (last error: HTTP 503 Service Unavailable (after 4 attempts))',
    );
    expect(waitingText(due, Infinity, () => Date.parse('2026-12-02T09:47:50.000Z'))).toContain(
      'the next at 2026-12-02T09:47:58.710Z',
    );
  });

  it("cuts a long error on watch's status line; status prints it whole", () => {
    const long = { ...waiting, lastError: `connection error: ${'x'.repeat(400)}` };
    const held = heldText({ waiting: long })!;
    expect(held).toMatch(/\(last error: connection error: x+…\)$/);
    expect(held.length).toBeLessThan(250);
    expect(waitingText(long)).toContain(long.lastError);
    // The other reasons read as before.
    expect(waitingText({ on: 'redis', since: 'S' })).toBe('waiting for the work queue (Redis) since S');
    expect(waitingText({ on: 'workers', since: 'S' })).toBe('waiting for a worker process since S');
    expect(waitingText({ on: 'progress', since: 'S' })).toBe('no item outcome since S');
  });

  it('says how many items another run holds and until when, not "waiting for claims"', () => {
    expect(waitingText({ on: 'claims', since: 'S', items: 320, until: '2026-12-04T10:27:09.000Z' })).toBe(
      "waiting for 320 items another run holds (a chunk still calling, or a stopped worker's claim until 2026-12-04T10:27:09.000Z)",
    );
  });

  it('says a bake whose next step is late as such, not "waiting for bake_end"', () => {
    expect(waitingText({ on: 'bake_end', since: '2026-12-04T22:05:22.000Z' })).toBe(
      'waiting for the step after the bake that ended at 2026-12-04T22:05:22.000Z',
    );
  });
});

describe('watch: an operation without waves', () => {
  it('prints no progress line for a rejected plan (it has no waves, nothing runs)', () => {
    const out: string[] = [];
    const view = lineView((x) => out.push(x));
    const rejected = { state: 'rejected', currentWave: null, haltReason: null, bakeUntil: null, skewMs: 0 };
    view.frame('snapshot', '1', {}, rejected);
    view.waves([], rejected);
    expect(out).toEqual(['watching: rejected\n']);
  });
});

describe('watch: a rollback in a log', () => {
  it('prints what the rollback restored so far on each progress line (done/items stays where the run left it)', () => {
    const out: string[] = [];
    const view = lineView((x) => out.push(x));
    const status = {
      state: 'rolling_back',
      currentWave: 1,
      waveCount: 2,
      haltReason: 'rollback by op: x',
      bakeUntil: null,
      skewMs: 0,
    };
    const wave = (restored: number, restoreFailed: number) =>
      [
        { wave: 0, items: 5, done: 5, failed: 0, pending: 0, restored: 0, restoreFailed: 0 },
        { wave: 1, items: 195, done: 195, failed: 0, pending: 0, restored, restoreFailed },
      ] as never;
    view.waves(wave(0, 0), status);
    view.waves(wave(20, 0), status);
    view.waves(wave(29, 3), status);
    expect(out).toEqual([
      'progress rolling_back · wave 2/2 · rollback by op: x · w1 5/5 · w2 195/195\n',
      'progress rolling_back · wave 2/2 · rollback by op: x · w1 5/5 · w2 195/195 · restored 20\n',
      'progress rolling_back · wave 2/2 · rollback by op: x · w1 5/5 · w2 195/195 · restored 29 (3 restore failed)\n',
    ]);
  });
});

describe('watch: probe rounds in a log', () => {
  const status = { state: 'baking', currentWave: 1, haltReason: null, bakeUntil: null, skewMs: 0 };
  const round = (wave: number, results: { tenantId: string; result: string; detail?: string }[]) => ({
    wave,
    at: `T${Math.random()}`,
    results,
  });
  const healthy = (n: number) => Array.from({ length: n }, (_, i) => ({ tenantId: `tn_${i}`, result: 'healthy' }));

  it('prints a round only when it differs from the last one printed for its wave (a round comes every 5 s of a bake)', () => {
    const out: string[] = [];
    const view = lineView((x) => out.push(x));
    for (let k = 0; k < 5; k++) view.frame('probes', '9', round(1, healthy(3)), status);
    view.frame('probes', '9', round(2, healthy(3)), status);
    view.frame('probes', '9', round(2, healthy(4)), status);
    expect(out).toEqual(['probes wave 2: 3 healthy\n', 'probes wave 3: 3 healthy\n', 'probes wave 3: 4 healthy\n']);
  });

  it('names the tenants that are not healthy and what they said, and says when they are healthy again', () => {
    const out: string[] = [];
    const view = lineView((x) => out.push(x));
    const sick = [
      ...healthy(2),
      { tenantId: 'tn_b', result: 'unhealthy', detail: 'HTTP 503' },
      { tenantId: 'tn_c', result: 'timeout', detail: 'no answer' },
    ];
    view.frame('probes', '9', round(0, sick), status);
    view.frame('probes', '9', round(0, sick), status);
    view.frame('probes', '9', round(0, healthy(4)), status);
    expect(out).toEqual([
      'probes wave 1: 2 healthy, 1 unhealthy, 1 timeout · tn_b unhealthy (HTTP 503), tn_c timeout (no answer)\n',
      'probes wave 1: 4 healthy\n',
    ]);
  });

  it('names at most 3 such tenants, and how many more', () => {
    const out: string[] = [];
    const bad = Array.from({ length: 5 }, (_, i) => ({
      tenantId: `tn_${i}`,
      result: 'error',
      detail: 'x'.repeat(300),
    }));
    lineView((x) => out.push(x)).frame('probes', '9', round(0, bad), status);
    expect(out).toHaveLength(1);
    expect(out[0]).toMatch(
      /^probes wave 1: 5 error · tn_0 error \(x+…\), tn_1 error \(x+…\), tn_2 error \(x+…\) and 2 more\n$/,
    );
    expect(out[0]!.length).toBeLessThan(400);
  });
});

describe('watch: probe rounds on a terminal', () => {
  /** The bar view on a stream that says it is a terminal; output() is what it wrote. */
  const terminal = () => {
    let out = '';
    const tty = Object.assign(new PassThrough(), {
      isTTY: true,
      columns: 160,
      cursorTo: () => true,
      clearLine: () => true,
      moveCursor: () => true,
    });
    tty.on('data', (c: Buffer) => (out += c.toString()));
    const view = barView(tty as unknown as NodeJS.WriteStream);
    return { view, output: () => new Promise<string>((r) => setImmediate(() => r(out))) };
  };

  it('logs a round above the bars when it differs from the last one shown for its wave', async () => {
    const { view, output } = terminal();
    const status = { state: 'baking', currentWave: 0, haltReason: null, bakeUntil: null, skewMs: 0 };
    const sick = { wave: 0, results: [{ tenantId: 'tn_b', result: 'unhealthy', detail: 'HTTP 503' }] };
    for (let k = 0; k < 3; k++) view.frame('probes', '9', { ...sick, at: `T${k}` }, status);
    view.waves([{ wave: 0, items: 5, done: 5, failed: 0, pending: 0 }], status);
    view.close();
    const out = await output();
    expect(out.split('probes wave 1: 1 unhealthy · tn_b unhealthy (HTTP 503)').length - 1).toBe(1);
  });

  it('writes a note logged just before it closes (cli-progress keeps logged lines until its next redraw)', async () => {
    const { view, output } = terminal();
    view.note('event stream dropped (socket hang up); reconnecting (attempt 1)');
    view.close();
    expect(await output()).toContain('event stream dropped (socket hang up); reconnecting (attempt 1)');
  });
});
