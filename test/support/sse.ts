// A minimal server-sent events client over fetch (what the CLI and /ui do too: EventSource cannot
// send an Authorization header): collects frames, lets a test wait for one, and disconnect.
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

export async function openSse(url: string, token: string, lastEventId?: string): Promise<SseClient> {
  const controller = new AbortController();
  const res = await fetch(url, {
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'text/event-stream',
      ...(lastEventId !== undefined ? { 'last-event-id': lastEventId } : {}),
    },
    signal: controller.signal,
  });
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
  const ended = (async () => {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += decoder.decode(chunk, { stream: true });
        for (let end = buf.indexOf('\n\n'); end >= 0; end = buf.indexOf('\n\n')) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const f: { id: string | null; event: string; data: string[] } = { id: null, event: 'message', data: [] };
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comments.push(line.slice(1).trim());
            else if (line.startsWith('id: ')) f.id = line.slice(4);
            else if (line.startsWith('event: ')) f.event = line.slice(7);
            else if (line.startsWith('data: ')) f.data.push(line.slice(6));
          }
          if (f.data.length) frames.push({ id: f.id, event: f.event, data: JSON.parse(f.data.join('\n')) });
          notify();
        }
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
