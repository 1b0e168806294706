// A connection that drops in the middle of a frame (after its `id:` line, before the blank
// line that ends it) must not move the resume cursor past that frame (WHATWG: the last event ID is
// set when the event is dispatched). Otherwise the reconnect's Last-Event-ID skips the transition.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ApiClient } from '../../src/cli/http.ts';
import { followSse } from '../../src/cli/sse.ts';

const f = (id: number, event: string, data: unknown) => `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const seen: (string | undefined)[] = [];
let server: Server;
let client: ApiClient;
let n = 0;
beforeAll(async () => {
  server = createServer((req, res) => {
    n++;
    seen.push(req.headers['last-event-id'] as string | undefined);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const after = Number(req.headers['last-event-id'] ?? 0);
    const all = [
      { id: 11, ev: 'transition', data: { seq: 11, action: 'operation.started', to: 'running', state: 'running' } },
      { id: 12, ev: 'transition', data: { seq: 12, action: 'operation.halted', to: 'halted', state: 'halted' } },
    ].filter((e) => e.id > after);
    let body = f(after, 'snapshot', { operation: { id: 'op_1', state: 'running' }, waves: [] });
    if (n === 1) {
      // transition 11 whole, then transition 12 cut after its id and event lines (a process killed
      // mid-write, a proxy cut): the frame never ends.
      body += f(11, 'transition', all[0]!.data) + 'id: 12\nevent: transition\n';
      res.write(body, () => res.destroy());
      return;
    }
    for (const e of all) body += f(e.id, e.ev, e.data);
    body += f(12, 'end', { state: 'halted' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  client = new ApiClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 'tok' });
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

it('a frame cut before its end is not skipped by the reconnect', async () => {
  const got: string[] = [];
  const outcome = await followSse({
    client,
    path: '/v1/operations/op_1/events',
    delayMs: 10,
    maxAttempts: 3,
    onFrame: (fr) => void got.push(`${fr.id}:${fr.event}`),
  });
  expect(outcome).toBe('end');
  // The reconnect must resume after 11 (the last frame received whole), not after 12.
  expect(seen).toEqual([undefined, '11']);
  expect(got.filter((g) => g.endsWith(':transition'))).toEqual(['11:transition', '12:transition']);
});
