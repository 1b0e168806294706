// A thin wrapper in front of test/support/downstream.ts (which is not ours to change): an HTTP
// proxy on 127.0.0.1 that
//  - adds a small random latency to every call, half before forwarding and half before answering,
//    so faults land while calls are in flight: a worker that dies in the first half never reaches
//    the downstream (a lost request); one that dies in the second half had its call applied but
//    never sees the answer (a lost response) — the two cases idempotency keys exist for;
//  - records each request's body per Idempotency-Key (the downstream keeps no bodies, and its
//    422 only catches a key reused on another method/path, not another body);
//  - counts, per trial, the resources whose delete / restore the downstream answered 2xx, so the
//    harness can inject a fault at a chosen point of progress;
//  - remembers which client port sent the latest destructive call, to find the busy worker.
// Bytes are forwarded unchanged (path, headers, body), so the downstream verifies the signatures
// Blastgate made.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Rng } from './rng.ts';

export type ProxyAction = 'snapshot' | 'softDelete' | 'restore' | 'hardDelete' | 'probe' | 'unknown';

export interface ProxyRecord {
  seq: number;
  at: number;
  method: string;
  path: string;
  action: ProxyAction;
  resourceId?: string;
  key?: string;
  bodyHash: string;
  /** The client's TCP port (which worker process sent it: see busyPid in faults.ts). */
  remotePort: number;
  /** Reached the downstream (false: the client went away during the first half of the latency). */
  forwarded: boolean;
  /** The downstream's answer. */
  status?: number;
  /** The client went away before it got the answer. */
  clientGone: boolean;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host', 'proxy-connection']);
const DESTRUCTIVE = new Set<ProxyAction>(['softDelete', 'restore', 'hardDelete']);

function route(method: string, pathname: string): { action: ProxyAction; id?: string } {
  const seg = pathname
    .split('/')
    .slice(1)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
  if (method === 'GET' && seg.length === 3 && seg[0] === 'tenants' && seg[2] === 'health') return { action: 'probe' };
  if (method === 'GET' && seg.length === 2) return { action: 'snapshot', id: seg[1] };
  if (method === 'DELETE' && seg.length === 2) return { action: 'hardDelete', id: seg[1] };
  if (method === 'POST' && seg.length === 3 && seg[2] === 'soft-delete') return { action: 'softDelete', id: seg[1] };
  if (method === 'POST' && seg.length === 3 && seg[2] === 'restore') return { action: 'restore', id: seg[1] };
  return { action: 'unknown' };
}

export interface ProxyOptions {
  /** The downstream's base URL (http://127.0.0.1:port). */
  target: string;
  /** Added latency per call, uniform in [min, max] ms. */
  latencyMs: [number, number];
  rng: Rng;
  /** Which trial a resource belongs to (for progress counters). */
  tagOf: (resourceId: string) => string | undefined;
}

export async function startRecordingProxy(opts: ProxyOptions) {
  const target = new URL(opts.target);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const records: ProxyRecord[] = [];
  const bodiesByKey = new Map<string, Set<string>>();
  const progress = new Map<string, { softDeleted: Set<string>; restored: Set<string> }>();
  let lastDestructive: ProxyRecord | undefined;
  let seq = 0;
  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
  const bucket = (tag: string) => {
    let b = progress.get(tag);
    if (!b) progress.set(tag, (b = { softDeleted: new Set(), restored: new Set() }));
    return b;
  };

  function forward(
    req: http.IncomingMessage,
    body: Buffer,
  ): Promise<{ status: number; headers: http.OutgoingHttpHeaders; body: Buffer }> {
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) headers[k] = v;
    headers.host = target.host;
    return new Promise((resolve, reject) => {
      const up = http.request(
        { hostname: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const h: http.OutgoingHttpHeaders = {};
            for (const [k, v] of Object.entries(res.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) h[k] = v;
            resolve({ status: res.statusCode ?? 502, headers: h, body: Buffer.concat(chunks) });
          });
          res.on('error', reject);
        },
      );
      up.setTimeout(30_000, () => up.destroy(new Error('upstream timeout')));
      up.on('error', reject);
      up.end(body);
    });
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const { action, id } = route(method, url.pathname);
    const key = typeof req.headers['idempotency-key'] === 'string' ? req.headers['idempotency-key'] : undefined;
    const rec: ProxyRecord = {
      seq: ++seq,
      at: Date.now(),
      method,
      path: req.url ?? '/',
      action,
      resourceId: id,
      key,
      bodyHash: createHash('sha256').update(body).digest('hex').slice(0, 16),
      remotePort: req.socket.remotePort ?? 0,
      forwarded: false,
      clientGone: false,
    };
    records.push(rec);
    if (DESTRUCTIVE.has(action)) lastDestructive = rec;
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) gone = rec.clientGone = true;
    });
    const latency = opts.rng.float(opts.latencyMs[0], opts.latencyMs[1]);
    await sleep(latency / 2);
    if (gone) return; // never reached the downstream
    rec.forwarded = true;
    if (key) {
      let s = bodiesByKey.get(key);
      if (!s) bodiesByKey.set(key, (s = new Set()));
      s.add(rec.bodyHash);
    }
    let answer: { status: number; headers: http.OutgoingHttpHeaders; body: Buffer };
    try {
      answer = await forward(req, body);
    } catch (err) {
      answer = {
        status: 502,
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(JSON.stringify({ error: `proxy: ${(err as Error).message}` })),
      };
    }
    rec.status = answer.status;
    if (id && answer.status >= 200 && answer.status < 300 && (action === 'softDelete' || action === 'restore')) {
      const tag = opts.tagOf(id);
      if (tag !== undefined) (action === 'softDelete' ? bucket(tag).softDeleted : bucket(tag).restored).add(id);
    }
    await sleep(latency - latency / 2);
    if (gone || res.destroyed) return; // applied, but the answer is lost
    res.writeHead(answer.status, { ...answer.headers, 'content-length': answer.body.length });
    res.end(answer.body);
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch(() => {
        if (!res.headersSent && !res.destroyed) res.writeHead(500).end();
      });
    });
  });
  // Longer than a trial: the adapter's pooled keep-alive sockets must not be closed under it.
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    records,
    bodiesByKey,
    /** Resources of a trial whose delete / restore the downstream has answered 2xx so far. */
    progress(tag: string) {
      const b = bucket(tag);
      return { softDeleted: b.softDeleted.size, restored: b.restored.size };
    },
    get lastDestructive() {
      return lastDestructive;
    },
    async close() {
      server.closeAllConnections();
      agent.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type RecordingProxy = Awaited<ReturnType<typeof startRecordingProxy>>;
