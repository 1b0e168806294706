// A real downstream service for tests and benchmarks: a node:http server on 127.0.0.1 that owns
// resources the way a system of record behind an HTTP adapter would. It verifies Blastgate's HMAC
// signature (scheme v2, against its own secret and the host it knows it is reached at: a
// signature made for another host or with another adapter's secret is refused), applies each destructive call once per Idempotency-Key (replaying the stored response
// for a repeated key, 409 for a key still in flight, 422 for a key reused on another request) and
// records every call, so tests assert on what actually reached the wire.
//
// Routes (any collection name, any id): GET /:col/:id[?tenantId=] (snapshot), POST /:col/snapshots
// (bulk snapshot: {"items":[{id,tenantId}…]} → {"items":{id: snapshot}}), POST /:col/:id/
// soft-delete, POST /:col/:id/restore, DELETE /:col/:id, GET /tenants/:tenantId/health.
//
// Cascades: a resource declared the parent of others (cascade()) takes them with it on a soft or
// hard delete, as a system that owns its cascade does; a restore brings back only the resource it
// names (Blastgate restores each descendant itself).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { verify } from '../../src/modules/adapters/signing.ts';

export type DownstreamAction =
  'snapshot' | 'snapshotBatch' | 'softDelete' | 'restore' | 'hardDelete' | 'probe' | 'unknown';
export type ProbeMode = 'healthy' | 'unhealthy' | 'hang' | 'error500';
export type ResourceState = 'active' | 'soft_deleted' | 'purged';

export interface DownstreamCall {
  seq: number;
  method: string;
  path: string;
  action: DownstreamAction;
  resourceId?: string;
  /** snapshotBatch: the IDs asked for. */
  resourceIds?: string[];
  tenantId?: string;
  idempotencyKey?: string;
  signatureValid: boolean;
  /** Response status; undefined while the request is still being handled (or was dropped). */
  status?: number;
  at: number;
}

export interface DownstreamResource {
  id: string;
  tenantId: string | null;
  state: ResourceState;
  data: Record<string, unknown>;
}

export interface DownstreamOptions {
  /** The secret its adapter signs with (the default one, or a named one such as `apps-prod`). */
  secret: string;
  /** false: unsigned and key-less calls are served too (a legacy API, for the baseline bench). */
  strict?: boolean;
  /** false: keep no call log (long benchmarks); counters and idempotency still work. */
  record?: boolean;
}

const DESTRUCTIVE = new Set<DownstreamAction>(['softDelete', 'restore', 'hardDelete']);
const MAX_BODY = 1024 * 1024;

interface Stored {
  fingerprint: string;
  status: number;
  body: string;
}
interface RequestBody {
  tenantId?: unknown;
  items?: { id?: unknown; tenantId?: unknown }[];
  snapshot?: { data?: Record<string, unknown> };
}

export async function startDownstream(opts: DownstreamOptions) {
  const strict = opts.strict ?? true;
  const record = opts.record ?? true;
  const calls: DownstreamCall[] = [];
  const resources = new Map<string, DownstreamResource>();
  const stored = new Map<string, Stored>();
  const inFlight = new Set<string>();
  const appliedByKey = new Map<string, number>();
  const callsByKey = new Map<string, number>();
  const probeModes = new Map<string, ProbeMode>();
  const held = new Set<http.ServerResponse>();
  const children = new Map<string, string[]>();
  let beforeApply: ((call: DownstreamCall) => Promise<void> | void) | undefined;
  const waits = new Set<() => void>();
  let seq = 0;
  let destructiveSeen = 0;
  let inProgress = 0;
  let peakInProgress = 0;
  let ctl = freshControls();
  /** `<hostname>:<port>` signatures must be made for; set once listening (see expectHost). */
  let host = '';

  function freshControls() {
    return {
      failAll: null as number | null,
      failAfter: null as { n: number; status: number } | null,
      failNext: { n: 0, status: 500, afterApply: false },
      failTenants: new Map<string, number>(),
      hangMs: 0,
      /** Every call (snapshot reads too) is answered this long after it arrives: a service's own latency. */
      latencyMs: 0,
      probeDefault: 'healthy' as ProbeMode,
      /** Failure injection applies to these actions only (null: every destructive action). */
      failOnly: null as Set<DownstreamAction> | null,
      /** A restore applies the snapshot, then these fields on top: it brings back different content. */
      restoreAlters: null as Record<string, unknown> | null,
      /** Every restore answers this status and applies nothing. */
      restoreFails: null as number | null,
      /** IDs a bulk snapshot answer leaves out, as if the system did not know them. */
      batchOmits: new Set<string>(),
      /** Every bulk snapshot request answers this status (null: they work). */
      batchFails: null as number | null,
      /** Reads (single or bulk) of these IDs answer this status; deletes still work. */
      snapshotFails: { ids: new Set<string>(), status: 500 },
      /** A destructive call's status chosen by the test, before its key is looked up (null: handled as usual). */
      answer: null as ((call: DownstreamCall) => number | null) | null,
    };
  }

  const resource = (id: string, tenantId: string | undefined): DownstreamResource => {
    let r = resources.get(id);
    if (!r) {
      r = { id, tenantId: tenantId ?? null, state: 'active', data: { name: `resource ${id}`, plan: 'pro' } };
      resources.set(id, r);
    }
    if (r.tenantId === null && tenantId) r.tenantId = tenantId;
    return r;
  };

  function route(method: string, pathname: string): { action: DownstreamAction; id?: string; tenant?: string } {
    const seg = pathname
      .split('/')
      .slice(1)
      .map((s) => decodeURIComponent(s));
    if (method === 'GET' && seg.length === 3 && seg[0] === 'tenants' && seg[2] === 'health')
      return { action: 'probe', tenant: seg[1] };
    if (method === 'GET' && seg.length === 2) return { action: 'snapshot', id: seg[1] };
    if (method === 'DELETE' && seg.length === 2) return { action: 'hardDelete', id: seg[1] };
    if (method === 'POST' && seg.length === 2 && seg[1] === 'snapshots') return { action: 'snapshotBatch' };
    if (method === 'POST' && seg.length === 3 && seg[2] === 'soft-delete') return { action: 'softDelete', id: seg[1] };
    if (method === 'POST' && seg.length === 3 && seg[2] === 'restore') return { action: 'restore', id: seg[1] };
    return { action: 'unknown' };
  }

  /** The state change itself: what a real service would commit. */
  function apply(
    action: DownstreamAction,
    r: DownstreamResource,
    body: RequestBody,
  ): { status: number; body: unknown } {
    if (action === 'hardDelete') {
      for (const x of [r, ...descendantsOf(r.id)]) {
        x.state = 'purged';
        x.data = {};
      }
      return { status: 200, body: { id: r.id, state: r.state } };
    }
    if (r.state === 'purged') return { status: 409, body: { error: 'resource is purged' } };
    if (action === 'softDelete') {
      for (const x of [r, ...descendantsOf(r.id)]) if (x.state === 'active') x.state = 'soft_deleted';
    } else if (action === 'restore') {
      r.state = 'active';
      if (body.snapshot?.data) r.data = body.snapshot.data;
      if (ctl.restoreAlters) r.data = { ...r.data, ...ctl.restoreAlters };
    }
    return { status: 200, body: { id: r.id, state: r.state } };
  }

  function descendantsOf(id: string): DownstreamResource[] {
    return (children.get(id) ?? []).flatMap((c) => [resource(c, undefined), ...descendantsOf(c)]);
  }

  function injectedFailure(
    action: DownstreamAction,
    tenantId: string | undefined,
  ): { status: number; afterApply: boolean } | null {
    if (ctl.failOnly && !ctl.failOnly.has(action)) return null;
    destructiveSeen++;
    const t = tenantId === undefined ? undefined : ctl.failTenants.get(tenantId);
    if (t !== undefined) return { status: t, afterApply: false };
    if (ctl.failAll !== null) return { status: ctl.failAll, afterApply: false };
    if (ctl.failNext.n > 0) {
      ctl.failNext.n--;
      return { status: ctl.failNext.status, afterApply: ctl.failNext.afterApply };
    }
    if (ctl.failAfter && destructiveSeen > ctl.failAfter.n) return { status: ctl.failAfter.status, afterApply: false };
    return null;
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, raw: string) {
    if (ctl.latencyMs > 0) await new Promise((r) => setTimeout(r, ctl.latencyMs));
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const { action, id, tenant } = route(method, url.pathname);
    const header = (h: string) => {
      const v = req.headers[h];
      return typeof v === 'string' ? v : undefined;
    };
    const signatureValid = verify(opts.secret, {
      signature: header('x-blastgate-signature'),
      timestamp: header('x-blastgate-timestamp'),
      method,
      // Its own idea of where it is reached, never the Host header (a replay chooses that).
      host,
      path: req.url ?? '/',
      body: raw,
    });
    let body: RequestBody = {};
    try {
      body = raw ? (JSON.parse(raw) as RequestBody) : {};
    } catch {
      return send(res, 400, { error: 'body is not JSON' });
    }
    const key = header('idempotency-key');
    const tenantId =
      (typeof body.tenantId === 'string' ? body.tenantId : undefined) ?? url.searchParams.get('tenantId') ?? tenant;
    const call: DownstreamCall = {
      seq: ++seq,
      method,
      path: req.url ?? '/',
      action,
      resourceId: id,
      ...(action === 'snapshotBatch' && Array.isArray(body.items)
        ? { resourceIds: body.items.map((i) => String(i.id)) }
        : {}),
      tenantId,
      idempotencyKey: key,
      signatureValid,
      at: Date.now(),
    };
    if (record) calls.push(call);
    res.on('finish', () => (call.status = res.statusCode));

    if (strict && !signatureValid) return send(res, 401, { error: 'bad signature' });
    if (action === 'unknown') return send(res, 404, { error: 'no such route' });
    if (action === 'probe') return probe(res, probeModes.get(tenant!) ?? ctl.probeDefault);
    if (action === 'snapshotBatch') {
      if (ctl.batchFails !== null) return send(res, ctl.batchFails, { error: 'injected bulk snapshot failure' });
      if (!Array.isArray(body.items)) return send(res, 400, { error: 'items must be an array' });
      if (body.items.some((i: { id?: unknown }) => ctl.snapshotFails.ids.has(String(i.id))))
        return send(res, ctl.snapshotFails.status, { error: 'injected read failure' });
      const items: Record<string, unknown> = {};
      for (const i of body.items) {
        const r = resource(String(i.id), typeof i.tenantId === 'string' ? i.tenantId : undefined);
        if (r.state !== 'purged' && !ctl.batchOmits.has(r.id))
          items[r.id] = { id: r.id, tenantId: r.tenantId, state: r.state, data: r.data };
      }
      return send(res, 200, { items });
    }
    const r = resource(id!, tenantId);
    if (action === 'snapshot') {
      if (ctl.snapshotFails.ids.has(r.id))
        return send(res, ctl.snapshotFails.status, { error: 'injected read failure' });
      return r.state === 'purged'
        ? send(res, 404, { error: 'purged' })
        : send(res, 200, { id: r.id, tenantId: r.tenantId, state: r.state, data: r.data });
    }

    // Destructive from here on.
    if (!key && strict) return send(res, 400, { error: 'Idempotency-Key header is required' });
    // Answered as the test says, ahead of the key's replay: nothing is applied or stored.
    const answered = ctl.answer?.(call) ?? null;
    if (answered !== null) return send(res, answered, { error: 'answered by the test' });
    const fingerprint = `${method} ${url.pathname}`;
    if (key) {
      callsByKey.set(key, (callsByKey.get(key) ?? 0) + 1);
      const prior = stored.get(key);
      if (prior) {
        if (prior.fingerprint !== fingerprint)
          return send(res, 422, { error: 'Idempotency-Key reused for another request' });
        res.setHeader('idempotent-replayed', 'true');
        return send(res, prior.status, prior.body, true);
      }
      if (inFlight.has(key)) return send(res, 409, { error: 'a request with this Idempotency-Key is in progress' });
      inFlight.add(key);
    }
    peakInProgress = Math.max(peakInProgress, ++inProgress);
    try {
      if (action === 'restore' && ctl.restoreFails !== null)
        return send(res, ctl.restoreFails, { error: 'injected restore failure' });
      const failure = injectedFailure(action, tenantId);
      if (failure && !failure.afterApply) return send(res, failure.status, { error: 'injected failure' });
      if (ctl.hangMs > 0) {
        let gone = false;
        await new Promise<void>((resolve) => {
          const wake = () => (clearTimeout(t), waits.delete(wake), resolve());
          const t = setTimeout(wake, ctl.hangMs);
          waits.add(wake);
          // A client that gives up ends the wait at once, releasing its key for the retry.
          res.on('close', () => {
            gone = !res.writableFinished;
            wake();
          });
        });
        // Like a server that aborts its transaction when the client goes away: nothing applied.
        if (gone || res.destroyed) return;
      }
      await beforeApply?.(call);
      const out = apply(action, r, body);
      if (key) {
        appliedByKey.set(key, (appliedByKey.get(key) ?? 0) + 1);
        stored.set(key, { fingerprint, status: out.status, body: JSON.stringify(out.body) });
      }
      // afterApply: committed, but the caller sees an error (a proxy 502, a lost response).
      if (failure) return send(res, failure.status, { error: 'injected failure after apply' });
      return send(res, out.status, out.body);
    } finally {
      inProgress--;
      if (key) inFlight.delete(key);
    }
  }

  function probe(res: http.ServerResponse, mode: ProbeMode) {
    if (mode === 'hang') {
      held.add(res); // answered never; released when the client gives up or on close()
      res.on('close', () => held.delete(res));
      return;
    }
    if (mode === 'error500') return send(res, 500, { error: 'probe failed' });
    return send(res, 200, { healthy: mode === 'healthy' });
  }

  function send(res: http.ServerResponse, status: number, body: unknown, preSerialized = false) {
    if (res.destroyed) return;
    const text = preSerialized ? (body as string) : JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks).toString('utf8')).catch(() => send(res, 500, { error: 'downstream bug' }));
    });
  });
  // Longer than any test or bench: the client's pooled sockets must not be closed under it.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  host = `127.0.0.1:${port}`;

  return {
    url: `http://127.0.0.1:${port}`,
    /** The host signatures must be made for (default `127.0.0.1:<port>`). */
    get host() {
      return host;
    },
    /** Reached through a proxy: signatures are made for the proxy's `<hostname>:<port>`. */
    expectHost(h: string) {
      host = h;
    },
    get calls(): readonly DownstreamCall[] {
      return calls;
    },
    destructiveCalls: () => calls.filter((c) => DESTRUCTIVE.has(c.action)),
    appliedByKey,
    callsByKey,
    resources,
    /** Most destructive calls handled at once since start or reset(). */
    get peakInProgress() {
      return peakInProgress;
    },
    state: (id: string) => resources.get(id)?.state,
    /** Snapshot reads of these IDs (single, or a bulk read naming one) answer `status`; deletes still work. */
    failSnapshotsOf(ids: string[], status = 500) {
      ctl.snapshotFails = { ids: new Set(ids), status };
    },
    /** Every destructive call answers `status` (null: stop failing). */
    failAll(status: number | null) {
      ctl.failAll = status;
    },
    /** The first n destructive calls (counted from now on) succeed, later ones answer `status`. */
    failAfter(n: number, status: number) {
      destructiveSeen = 0;
      ctl.failAfter = { n, status };
    },
    /** The next n destructive calls answer `status`; with afterApply they are applied first. */
    failNext(n: number, status: number, o: { afterApply?: boolean } = {}) {
      ctl.failNext = { n, status, afterApply: o.afterApply ?? false };
    },
    failTenants(ids: string[], status: number) {
      for (const t of ids) ctl.failTenants.set(t, status);
    },
    /** Injected failures (and failAfter's count) apply only to these actions, e.g. deletes but not restores (null: all). */
    failOnly(actions: DownstreamAction[] | null) {
      ctl.failOnly = actions && new Set(actions);
    },
    /** Restores apply, then set these fields in the resource's data (null: restore faithfully). */
    restoreAlters(fields: Record<string, unknown> | null) {
      ctl.restoreAlters = fields;
    },
    /** Every restore answers `status` without applying (null: restores work). */
    restoreFails(status: number | null) {
      ctl.restoreFails = status;
    },
    /** Declares `childIds` the children of `parentId`: its soft and hard deletes cascade to them. */
    cascade(parentId: string, childIds: string[]) {
      children.set(parentId, childIds);
    },
    /**
     * Destructive calls for which fn returns a status are answered with it before anything else is
     * done (not applied, no key stored or replayed): a service whose idempotency store lost the key,
     * answering a retry of an applied delete 404 or 422. The call is already recorded when fn runs.
     */
    answer(fn: ((call: DownstreamCall) => number | null) | null) {
      ctl.answer = fn;
    },
    /** Runs (and is awaited) right before a destructive call is applied; the call is already recorded. */
    beforeApply(fn: ((call: DownstreamCall) => Promise<void> | void) | undefined) {
      beforeApply = fn;
    },
    /** Bulk snapshot answers leave these IDs out (as a system that does not know them would). */
    snapshotBatchOmits(ids: string[]) {
      for (const id of ids) ctl.batchOmits.add(id);
    },
    /** Every bulk snapshot request answers `status` (null: they work). */
    snapshotBatchFails(status: number | null) {
      ctl.batchFails = status;
    },
    /** Every call is answered ms after it arrives (0: at once), unlike hang() which holds destructive calls only. */
    latency(ms: number) {
      ctl.latencyMs = ms;
    },
    /** Destructive calls wait ms before being handled (0: no delay). */
    hang(ms: number) {
      ctl.hangMs = ms;
    },
    probe(tenantId: string, mode: ProbeMode) {
      probeModes.set(tenantId, mode);
    },
    probeDefault(mode: ProbeMode) {
      ctl.probeDefault = mode;
    },
    reset() {
      calls.length = 0;
      for (const m of [resources, stored, appliedByKey, callsByKey, probeModes, children]) m.clear();
      beforeApply = undefined;
      destructiveSeen = 0;
      peakInProgress = inProgress;
      ctl = freshControls();
    },
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      // Hung handlers wake up, find their client gone and return without applying anything.
      for (const wake of [...waits]) wake();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export type Downstream = Awaited<ReturnType<typeof startDownstream>>;
