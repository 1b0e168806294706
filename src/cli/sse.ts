// Server-sent events over fetch (an Authorization header is needed, which EventSource cannot send):
// a frame parser that follows the WHATWG rules (id/event/data/retry fields, `:` comments, a blank
// line ends a frame, CR, LF and CRLF line ends, chunks split anywhere), and a follower that
// reconnects with Last-Event-ID after a dropped connection so no event is missed, until the
// server sends `end` or the caller stops. A connection that goes quiet for longer than a few
// heartbeats counts as dropped.
import { CliError, EXIT } from './exit-codes.ts';
import { apiError, type ApiClient, type ApiErrorBody } from './http.ts';

export interface SseFrame {
  event: string;
  data: string;
  /** The last event ID seen so far on this stream (the cursor to resume from). */
  id: string | undefined;
}

export class SseParser {
  private buf = '';
  private event = '';
  private data: string[] = [];
  private sawCR = false;
  /**
   * The cursor to resume from: an `id:` line's value once its frame has ended (the WHATWG last
   * event ID buffer, set on dispatch). Taken at the `id:` line, a connection cut inside a frame
   * resumed after the event it never delivered (a probe: a transition lost across a reconnect).
   */
  lastId: string | undefined;
  private idBuffer: string | undefined;
  /** The server's `retry:` advice, in ms. */
  retryMs: number | undefined;

  /** `onComment` hears comment lines (`: ping` heartbeats), which carry no frame. */
  constructor(
    lastId?: string,
    private readonly onComment?: (text: string) => void,
  ) {
    this.lastId = lastId;
    this.idBuffer = lastId;
  }

  /** Feeds a chunk of text; returns the frames it completed. */
  push(chunk: string): SseFrame[] {
    const frames: SseFrame[] = [];
    let text = chunk;
    // A CRLF split across chunks: the LF belongs to the CR already seen.
    if (this.sawCR && text.startsWith('\n')) text = text.slice(1);
    this.sawCR = false;
    this.buf += text;
    let start = 0;
    for (let i = 0; i < this.buf.length; i++) {
      const c = this.buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.buf.slice(start, i);
      if (c === 13) {
        if (i + 1 < this.buf.length) {
          if (this.buf.charCodeAt(i + 1) === 10) i++;
        } else this.sawCR = true;
      }
      start = i + 1;
      const frame = this.line(line);
      if (frame) frames.push(frame);
    }
    this.buf = this.buf.slice(start);
    return frames;
  }

  private line(line: string): SseFrame | undefined {
    if (line === '') {
      this.lastId = this.idBuffer;
      const frame = this.data.length
        ? { event: this.event || 'message', data: this.data.join('\n'), id: this.lastId }
        : undefined;
      this.event = '';
      this.data = [];
      return frame;
    }
    if (line.startsWith(':')) {
      this.onComment?.(line.slice(1).trim());
      return undefined;
    }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.data.push(value);
    else if (field === 'id' && !value.includes('\0')) this.idBuffer = value;
    else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
    return undefined;
  }
}

export interface FollowOptions {
  client: ApiClient;
  path: string;
  /** Resume after this cursor (sent as Last-Event-ID). */
  after?: string;
  /** Called for each frame; return true to stop following. */
  onFrame(frame: SseFrame): boolean | void;
  /** Called before each reconnect (for a note to the user). */
  onReconnect?(attempt: number, why: string): void;
  /** Called whenever bytes arrive (a frame or a heartbeat): the server was heard from. */
  onData?(): void;
  signal?: AbortSignal;
  /** No byte (not even a heartbeat) for this long: the connection is dropped and made again. */
  idleTimeoutMs?: number;
  /** Consecutive failed connections before giving up (network errors, 5xx, 429). */
  maxAttempts?: number;
  /** First reconnect delay; doubles per consecutive failure up to maxDelayMs. */
  delayMs?: number;
  maxDelayMs?: number;
}

/** Follows the stream until `end` (resolves 'end'), or onFrame says stop (resolves 'stopped'). */
export async function followSse(o: FollowOptions): Promise<'end' | 'stopped'> {
  let lastId = o.after;
  let failures = 0;
  const maxAttempts = o.maxAttempts ?? 20;
  const idleMs = o.idleTimeoutMs ?? 45_000;
  for (;;) {
    if (o.signal?.aborted) return 'stopped';
    const parser = new SseParser(lastId);
    let why: string;
    try {
      const outcome = await connectOnce(o, parser, idleMs, () => (failures = 0));
      lastId = parser.lastId;
      if (outcome !== 'dropped') return outcome;
      why = 'the stream closed before the end';
    } catch (err) {
      lastId = parser.lastId;
      if (o.signal?.aborted) return 'stopped';
      if (err instanceof CliError && !(err.status === 429 || (err.status ?? 0) >= 500 || err.status === undefined))
        throw err;
      why = (err as Error).message;
    }
    failures++;
    if (failures > maxAttempts)
      throw new CliError(EXIT.error, 'STREAM_FAILED', `gave up following the event stream: ${why}`);
    o.onReconnect?.(failures, why);
    const base = parser.retryMs ?? o.delayMs ?? 500;
    await sleep(Math.min(base * 2 ** (failures - 1), o.maxDelayMs ?? 10_000), o.signal);
  }
}

async function connectOnce(
  o: FollowOptions,
  parser: SseParser,
  idleMs: number,
  connected: () => void,
): Promise<'end' | 'stopped' | 'dropped'> {
  const ctl = new AbortController();
  const onAbort = () => ctl.abort();
  o.signal?.addEventListener('abort', onAbort);
  let idle: NodeJS.Timeout | undefined;
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => ctl.abort(new Error(`no data for ${idleMs} ms`)), idleMs);
  };
  try {
    arm();
    const res = await o.client.raw('GET', o.path, {
      headers: { accept: 'text/event-stream', ...(parser.lastId ? { 'last-event-id': parser.lastId } : {}) },
      signal: ctl.signal,
    });
    if (!res.ok) {
      const text = await res.text();
      let body: ApiErrorBody | undefined;
      try {
        body = JSON.parse(text) as ApiErrorBody;
      } catch {
        body = undefined;
      }
      throw apiError(res.status, body, text);
    }
    if (!res.body) return 'dropped';
    connected();
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      arm();
      o.onData?.();
      for (const frame of parser.push(decoder.decode(chunk, { stream: true }))) {
        if (o.onFrame(frame)) return 'stopped';
        if (frame.event === 'end') return 'end';
      }
    }
    return 'dropped';
  } catch (err) {
    if (o.signal?.aborted) return 'stopped';
    if (ctl.signal.aborted) throw new Error((ctl.signal.reason as Error | undefined)?.message ?? 'aborted');
    throw err;
  } finally {
    clearTimeout(idle);
    o.signal?.removeEventListener('abort', onAbort);
    ctl.abort();
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done);
  });
