// HTTP adapter: acts on the owning system through URL templates, one signed request per item, or
// per snapshotBatchSize items for snapshots when the optional bulk read (snapshotBatch) is declared
// (transport in http-transport.ts; targets and failure reasons in http-render.ts).
import type http from 'node:http';
import { afterAttempts, connectionText, renderTarget, statusText } from './http-render.ts';
import {
  BodyTooLargeError,
  createAgent,
  mapPool,
  RequestTimeoutError,
  sendRequest,
  type Lookup,
  type RawResponse,
} from './http-transport.ts';
import { DisallowedAddressError } from './host-allowlist.ts';
import { IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signingHost } from './signing.ts';
import type { ResolvedHttpConfig } from './schemas.ts';
import {
  SKIPPED,
  type AdapterItem,
  type ApplyOptions,
  type DestructiveAction,
  type ItemFailed,
  type ItemResult,
  type ProbeResult,
  type TargetAdapter,
} from './types.ts';

// Long enough to ride out a downstream restart, short enough that a halt is not held up.
const MAX_BACKOFF_MS = 10_000;

interface Template {
  method: string;
  path: string;
}
const parseTemplate = (t: string): Template => {
  const space = t.indexOf(' ');
  return { method: t.slice(0, space), path: t.slice(space + 1) };
};
/**
 * 408 and 429 say "later", not "never": they are retried like 5xx. So is 409, which an idempotent
 * API answers while a request with the same Idempotency-Key is still being processed (typically
 * our own earlier attempt that timed out). Other 4xx are the item's fault.
 */
const isRetryableStatus = (s: number) => s >= 500 || s === 408 || s === 409 || s === 429;
/**
 * A final answer that says the request was refused as it stood, so the owning system changed
 * nothing: a 4xx that is not retried, other than 404 and 410. Those say "not there", which is also
 * how a system answers a delete that an earlier attempt applied (its response lost). A 3xx is not
 * one: a 303 answers a request that was carried out.
 */
export const isDefiniteRefusal = (s: number) => s >= 400 && s < 500 && s !== 404 && s !== 410 && !isRetryableStatus(s);

function retryAfterMs(headers: http.IncomingHttpHeaders): number {
  const v = headers['retry-after'];
  if (!v) return 0;
  const secs = Number(v);
  if (Number.isFinite(secs)) return secs * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? 0 : at - Date.now();
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** Of a permanent failure: no attempt changed anything (see ItemFailed.unapplied). */
const UNAPPLIED = { unapplied: true } as const;

type Call = {
  template: Template;
  item: AdapterItem;
  action: DestructiveAction | 'snapshot';
  key?: string;
  snapshot?: unknown;
};

export interface HttpAdapterDeps {
  /** The value of the adapter's signing secret (never stored, never logged). */
  secret: string;
  /** Name resolution for its connections: refuses never-allowed addresses (host-allowlist.ts). */
  lookup?: Lookup;
}

export function createHttpAdapter(config: ResolvedHttpConfig, deps: HttpAdapterDeps): TargetAdapter {
  const base = new URL(config.baseUrl);
  const basePath = base.pathname.replace(/\/+$/, '');
  const host = signingHost(base);
  const agent = createAgent(config.baseUrl);
  const templates = {
    snapshot: parseTemplate(config.snapshot),
    softDelete: parseTemplate(config.softDelete),
    restore: parseTemplate(config.restore),
    hardDelete: parseTemplate(config.hardDelete),
  };
  const probeTemplate = config.probe ? parseTemplate(config.probe) : undefined;
  const batchTemplate = config.snapshotBatch ? parseTemplate(config.snapshotBatch) : undefined;

  // Signs the exact host, path and body that go on the wire; a fresh timestamp per attempt keeps
  // retries inside the receiver's replay window, while the Idempotency-Key stays the same.
  const send = (method: string, path: string, body: string, extra: Record<string, string>, timeoutMs: number) => {
    const timestamp = Date.now();
    const headers = {
      ...extra,
      [TIMESTAMP_HEADER]: String(timestamp),
      [SIGNATURE_HEADER]: sign(deps.secret, { timestamp, method, host, path, body }),
    };
    return sendRequest(agent, base, { method, path, headers, body, timeoutMs }, deps.lookup);
  };

  /**
   * One request, attempted with backoff until a 2xx or a failure retrying cannot help;
   * `shouldContinue` is consulted before every attempt. A permanent failure is `unapplied` only when
   * no attempt before it was sent with an unknown outcome (`last`: every retried attempt is one).
   */
  async function exchange(
    method: string,
    path: string,
    body: string,
    extra: Record<string, string>,
    shouldContinue?: () => boolean,
  ): Promise<{ ok: true; res: RawResponse } | ItemFailed | typeof SKIPPED> {
    let last: ItemFailed | undefined;
    let waitAtLeast = 0;
    // Requests handed to the transport: what a failure says it took, never the retry budget (a halt
    // stops a call between its tries: "after 3 attempts" against 2 calls in the downstream's log).
    let sent = 0;
    for (let attempt = 0; attempt <= config.retries; attempt++) {
      if (attempt > 0) {
        const exp = config.retryBaseMs * 2 ** (attempt - 1);
        await sleep(Math.min(MAX_BACKOFF_MS, Math.max(waitAtLeast, exp / 2 + Math.random() * (exp / 2))));
      }
      if (shouldContinue && !shouldContinue()) {
        // Attempted before: the owning system may have applied it, so report the failure, not a skip.
        if (!last) return SKIPPED;
        // Told to stop by a halt or pause, a shutdown, or a rollback batch's time budget (its
        // other items wait): "stopped before retry" alone read as a halt to a trial that had none.
        const error = afterAttempts(
          `stopped before retry (a halt, a shutdown or the batch's time budget); last attempt: ${last.error}`,
          sent,
        );
        return { ...last, interrupted: true, attempts: sent, error };
      }
      let res: RawResponse;
      sent++;
      try {
        res = await send(method, path, body, extra, config.timeoutMs);
      } catch (err) {
        if (err instanceof BodyTooLargeError) return { ok: false, permanent: true, error: err.message, attempts: sent };
        // The policy, not the network, said no: retrying cannot help. This attempt reached no host
        // (an earlier one may have: its doubt stays in the error, and the item is not `unapplied`).
        if (err instanceof DisallowedAddressError)
          return {
            ok: false,
            permanent: true,
            error: `refused before sending: ${err.reason}${last ? `; earlier attempt: ${last.error}` : ''}`,
            attempts: sent - 1,
            ...(last ? {} : UNAPPLIED),
          };
        last = {
          ok: false,
          permanent: false,
          error: err instanceof RequestTimeoutError ? err.message : `connection error: ${connectionText(err)}`,
        };
        waitAtLeast = 0;
        continue;
      }
      if (res.status >= 200 && res.status < 300) return { ok: true, res };
      const failure = { ok: false as const, error: statusText(res.status), status: res.status };
      // Redirects are not followed: a signed destructive call must reach the configured host only.
      // An earlier attempt may have been applied: keep its error so the ledger shows the doubt.
      if (!isRetryableStatus(res.status))
        return {
          ...failure,
          permanent: true,
          error: last ? `${failure.error}; earlier attempt: ${last.error}` : failure.error,
          attempts: sent,
          ...(!last && isDefiniteRefusal(res.status) ? UNAPPLIED : {}),
        };
      last = { ...failure, permanent: false };
      waitAtLeast = retryAfterMs(res.headers);
    }
    return { ...last!, attempts: sent, error: afterAttempts(last!.error, sent) };
  }

  /** One item: attempts with backoff; `shouldContinue` is consulted before every attempt. */
  async function call(c: Call, shouldContinue?: () => boolean): Promise<ItemResult> {
    const { item, template } = c;
    const rendered = renderTarget(template.path, {
      id: item.resourceId,
      tenantId: item.tenantId,
      type: item.type,
      operationId: item.operationId,
    });
    // Nothing was sent, and no retry can change the ID: the item fails for good.
    if (!rendered.ok) return { ok: false, permanent: true, error: rendered.reason, ...UNAPPLIED };
    const path = basePath + rendered.target;
    const body =
      template.method === 'GET'
        ? ''
        : JSON.stringify({
            id: item.resourceId,
            tenantId: item.tenantId,
            type: item.type,
            operationId: item.operationId,
            action: c.action,
            snapshot: c.snapshot,
          });
    const extra: Record<string, string> = c.key ? { [IDEMPOTENCY_HEADER]: c.key } : {};
    const got = await exchange(template.method, path, body, extra, shouldContinue);
    if (!got.ok) return got;
    if (c.action !== 'snapshot') return { ok: true };
    try {
      return { ok: true, data: JSON.parse(got.res.body) as unknown };
    } catch {
      // Without a parseable snapshot the delete would not be reversible (promise 4).
      return {
        ok: false,
        permanent: true,
        error: `snapshot answer is not JSON (${statusText(got.res.status)})`,
        status: got.res.status,
      };
    }
  }

  /**
   * snapshotBatch: one signed POST for up to snapshotBatchSize items. Each item gets exactly what a
   * single snapshot would have given it: its body, or a failure (the request's, or "absent from the
   * answer", which is a 404 of its own) — so no item without a snapshot is ever called.
   */
  async function readBatch(template: Template, items: AdapterItem[]): Promise<ItemResult[]> {
    const body = JSON.stringify({
      items: items.map((i) => ({ id: i.resourceId, tenantId: i.tenantId, type: i.type, operationId: i.operationId })),
    });
    const got = await exchange(template.method, basePath + template.path, body, {});
    if (!got.ok) return items.map(() => got);
    let answer: unknown;
    try {
      answer = JSON.parse(got.res.body);
    } catch {
      answer = undefined;
    }
    const found = (answer as { items?: unknown } | undefined)?.items;
    if (!found || typeof found !== 'object' || Array.isArray(found)) {
      const error = `snapshotBatch answer is not {"items":{…}} (${statusText(got.res.status)})`;
      return items.map(() => ({ ok: false, permanent: true, error, status: got.res.status }));
    }
    // Own properties only: an ID such as "constructor" must not read Object.prototype.
    return items.map((i): ItemResult => {
      const data = Object.hasOwn(found, i.resourceId) ? (found as Record<string, unknown>)[i.resourceId] : undefined;
      return data === undefined || data === null
        ? { ok: false, permanent: true, error: 'absent from the snapshotBatch answer' }
        : { ok: true, data };
    });
  }

  const guarded = (c: Call, shouldContinue?: () => boolean) =>
    // A bug here must not reject the whole batch and lose the other items' outcomes.
    call(c, shouldContinue).catch((err: unknown): ItemResult => ({
      ok: false,
      permanent: false,
      error: `internal error (${connectionText(err)})`,
    }));

  return {
    kind: 'http',
    // The owning system cascades a delete itself; Blastgate only stored the descendants' snapshots.
    cascade: 'downstream',
    // Two types behind the same base URL are one system: a delete of the parent takes the child.
    system: `${base.origin}${basePath}`,
    volatileFields: config.volatileFields ?? [],

    async snapshot(items, opts) {
      if (batchTemplate) {
        const groups: AdapterItem[][] = [];
        for (let k = 0; k < items.length; k += config.snapshotBatchSize)
          groups.push(items.slice(k, k + config.snapshotBatchSize));
        const results = await mapPool(groups, opts.concurrency, (g) =>
          readBatch(batchTemplate, g).catch((err: unknown): ItemResult[] =>
            g.map(() => ({ ok: false, permanent: false, error: `internal error (${connectionText(err)})` })),
          ),
        );
        return results.flat();
      }
      return mapPool(items, opts.concurrency, (item) =>
        guarded({ template: templates.snapshot, item, action: 'snapshot' }),
      );
    },

    apply(action, items, opts: ApplyOptions) {
      // Sticky: once the caller says stop, nothing more is sent in this batch even if it flaps back.
      let halted = false;
      const shouldContinue = () => {
        if (!halted && !opts.shouldContinue()) halted = true;
        return !halted;
      };
      return mapPool(items, opts.concurrency, (item) =>
        guarded(
          {
            template: templates[action],
            item,
            action,
            key: opts.idempotencyKey(item, action),
            snapshot: action === 'restore' ? opts.snapshots?.get(item.resourceId) : undefined,
          },
          shouldContinue,
        ),
      );
    },

    async probe(tenantId, opts): Promise<ProbeResult> {
      if (!probeTemplate) return { result: 'not_configured' };
      const rendered = renderTarget(probeTemplate.path, { tenantId });
      if (!rendered.ok) return { result: 'error', detail: rendered.reason };
      const path = basePath + rendered.target;
      const body = probeTemplate.method === 'GET' ? '' : JSON.stringify({ tenantId, action: 'probe' });
      let res: RawResponse;
      try {
        res = await send(probeTemplate.method, path, body, {}, opts.timeoutMs);
      } catch (err) {
        if (err instanceof RequestTimeoutError) return { result: 'timeout', detail: err.message };
        if (err instanceof DisallowedAddressError)
          return { result: 'error', detail: `refused before sending: ${err.reason}` };
        return { result: 'error', detail: connectionText(err) };
      }
      if (res.status >= 200 && res.status < 300) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(res.body);
        } catch {
          return { result: 'healthy' }; // a plain 2xx is the simplest health endpoint there is
        }
        const healthy = parsed && typeof parsed === 'object' ? (parsed as { healthy?: unknown }).healthy : undefined;
        return healthy === false ? { result: 'unhealthy', detail: 'healthy: false' } : { result: 'healthy' };
      }
      // 5xx: the system says it is sick. 4xx: the probe itself is wrong; still not healthy.
      return { result: res.status >= 500 ? 'unhealthy' : 'error', detail: statusText(res.status) };
    },

    async close() {
      agent.destroy();
    },
  };
}
