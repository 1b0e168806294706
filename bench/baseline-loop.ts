// The unsafe script Blastgate replaces: a loop that POSTs a soft delete for every ID, with no type
// check, no snapshot, no waves, no signature, no idempotency key and no halt. It uses the very same
// HTTP client as the HTTP adapter (node:http, keep-alive Agent, same worker pool), so the ratio
// adapter/plain measures what Blastgate's safety costs, not a difference between HTTP clients.
// Serve it with a downstream started with `strict: false` (it sends neither signature nor key).
import { createAgent, mapPool, sendRequest } from '../src/modules/adapters/http-transport.ts';
import {
  IDEMPOTENCY_HEADER,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  sign,
  signingHost,
} from '../src/modules/adapters/signing.ts';

export interface PlainLoopOptions {
  baseUrl: string;
  ids: readonly string[];
  concurrency: number;
  /** Path for one id; default matches the adapter example `POST /apps/{id}/soft-delete`. */
  path?: (id: string) => string;
  timeoutMs?: number;
  /**
   * Sign each request and send an Idempotency-Key as Blastgate's calls do (the same headers and
   * HMAC): the loop then pays for the calling protocol, and what is left of the difference to
   * Blastgate is its engine (snapshots, ledger, waves).
   */
  signWith?: string;
}

export interface PlainLoopResult {
  items: number;
  failed: number;
  seconds: number;
  itemsPerSec: number;
}

export async function plainLoop({
  baseUrl,
  ids,
  concurrency,
  path,
  timeoutMs = 2_000,
  signWith,
}: PlainLoopOptions): Promise<PlainLoopResult> {
  const base = new URL(baseUrl);
  const basePath = base.pathname.replace(/\/+$/, '');
  const toPath = path ?? ((id: string) => `/apps/${encodeURIComponent(id)}/soft-delete`);
  const agent = createAgent(baseUrl);
  const host = signingHost(base);
  let failed = 0;
  const started = performance.now();
  try {
    await mapPool(ids, concurrency, async (id) => {
      try {
        const method = 'POST';
        const target = basePath + toPath(id);
        const body = JSON.stringify({ id });
        const timestamp = Date.now();
        const headers: Record<string, string> = signWith
          ? {
              [IDEMPOTENCY_HEADER]: `loop-${id}`,
              [TIMESTAMP_HEADER]: String(timestamp),
              [SIGNATURE_HEADER]: sign(signWith, { timestamp, method, host, path: target, body }),
            }
          : {};
        const res = await sendRequest(agent, base, { method, path: target, headers, body, timeoutMs });
        if (res.status < 200 || res.status >= 300) failed++;
      } catch {
        failed++; // the script this replaces would log and move on
      }
    });
  } finally {
    agent.destroy();
  }
  const seconds = (performance.now() - started) / 1000;
  return { items: ids.length, failed, seconds, itemsPerSec: ids.length / seconds };
}
