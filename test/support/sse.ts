// A minimal server-sent events client over fetch (what the CLI and /ui do too: EventSource cannot
// send an Authorization header), parsing with the CLI's SseParser: collects frames and heartbeat
// comments, lets a test wait for one, and disconnect.
import { SseParser } from '../../src/cli/sse.ts';

export interface SseFrame {
  id: string | null;
  event: string;
  data: Record<string, unknown>;
}

export interface SseClient {
  status: number;
  frames: SseFrame[];
  comments: string[];
  /** Resolves once the server ended the stream (or the client closed it). */
  ended: Promise<void>;
  waitFor(pred: (f: SseFrame) => boolean, what: string, timeoutMs?: number): Promise<SseFrame>;
  close(): void;
  body?: unknown;
}

/** Opens the stream; a 503 (the API shedding load on a busy machine) is tried again, as the CLI does. */
export async function openSse(url: string, token: string, lastEventId?: string, tries = 10): Promise<SseClient> {
  const controller = new AbortController();
  const res = await fetch(url, {
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'text/event-stream',
      ...(lastEventId !== undefined ? { 'last-event-id': lastEventId } : {}),
    },
    signal: controller.signal,
  });
  if (res.status === 503 && tries > 1) {
    // Bounded: the tenth answer is returned whatever it is. Retry-After is in seconds; at most 2 s here.
    const after = Math.min(2_000, Number(res.headers.get('retry-after') ?? 1) * 1000 || 1000);
    await res.body?.cancel().catch(() => undefined);
    await new Promise((r) => setTimeout(r, after));
    return openSse(url, token, lastEventId, tries - 1);
  }
  const frames: SseFrame[] = [];
  const comments: string[] = [];
  const waiters = new Set<() => void>();
  const notify = () => waiters.forEach((w) => w());
  if (res.status !== 200) {
    const body = await res.json().catch(() => null);
    return {
      status: res.status,
      frames,
      comments,
      body,
      ended: Promise.resolve(),
      waitFor: () => Promise.reject(new Error(`stream not open: ${res.status}`)),
      close: () => controller.abort(),
    };
  }
  const parser = new SseParser(undefined, (text) => comments.push(text));
  const ended = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        for (const f of parser.push(decoder.decode(chunk, { stream: true })))
          frames.push({ id: f.id ?? null, event: f.event, data: JSON.parse(f.data) });
        notify();
      }
    } catch {
      // aborted by close()
    }
    notify();
  })();
  let done = false;
  void ended.then(() => (done = true));
  return {
    status: 200,
    frames,
    comments,
    ended,
    async waitFor(pred, what, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = frames.find(pred);
        if (hit) return hit;
        if (done) throw new Error(`stream ended before ${what}; frames: ${frames.map((f) => f.event).join(',')}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise<void>((resolve) => {
          const w = () => {
            waiters.delete(w);
            resolve();
          };
          waiters.add(w);
          setTimeout(w, 200);
        });
      }
    },
    close: () => controller.abort(),
  };
}
