// A real webhook receiver on 127.0.0.1: records every request (raw body, headers, arrival time) and
// answers as told: 204, 500, 204 after `slowMs` (a receiver slower than the delivery deadline), or
// never (a receiver that hangs; close() cuts its sockets). `maxOpen()`: the most requests it held
// unanswered at once, i.e. how many delivery slots it took.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface Received {
  headers: Record<string, string>;
  body: string;
  /** Date.now() when the whole request had arrived. */
  at: number;
}
export type ReceiverMode = 'ok' | 'fail' | 'hang' | 'slow';

export async function startReceiver(initial: ReceiverMode, opts: { slowMs?: number } = {}) {
  // setMode changes it: a receiver that comes back after an outage keeps its address.
  let mode = initial;
  const received: Received[] = [];
  const sockets = new Set<Socket>();
  let open = 0;
  let maxOpen = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    open++;
    maxOpen = Math.max(maxOpen, open);
    // Counted until the answer is sent or the client gives up on it (a delivery timeout).
    res.on('close', () => open--);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = Object.fromEntries(
        Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : (v ?? '')]),
      );
      received.push({ headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
      if (mode === 'hang') return;
      const answer = () => {
        res.statusCode = mode === 'fail' ? 500 : 204;
        res.end(mode === 'fail' ? 'receiver is broken' : undefined);
      };
      if (mode === 'slow') setTimeout(answer, opts.slowMs ?? 15_000).unref();
      else answer();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    /** Parsed bodies. */
    events: () =>
      received.map((r) => JSON.parse(r.body) as { type: string; timestamp: string; data: Record<string, unknown> }),
    maxOpen: () => maxOpen,
    setMode(m: ReceiverMode) {
      mode = m;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
export type Receiver = Awaited<ReturnType<typeof startReceiver>>;
