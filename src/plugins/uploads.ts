// Streamed uploads: `application/x-ndjson` and `text/plain` bodies reach the handler as the raw
// request stream (never buffered whole); handlers read them with lib/lines.ts. Their IDs are staged
// in tables of their own (modules/operations/staging.ts); the sweeper here drops the tables of
// uploads whose process died before it could.
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { sweepStaleStaging } from '../modules/operations/staging.ts';

export const NDJSON = 'application/x-ndjson';
export const TEXT = 'text/plain';

export function installStreamingParsers(app: FastifyInstance) {
  for (const type of [NDJSON, TEXT]) {
    app.addContentTypeParser(type, (_req, payload, done) => done(null, payload));
  }
}

/**
 * Drops staging tables older than `staleAfterMs` (at start-up, then every so often): no live
 * request can own one, so its process died mid-upload. Any replica may drop any of them.
 */
export function installStagingSweeper(app: FastifyInstance, o: { pool: pg.Pool; staleAfterMs: number }) {
  const sweep = async () => {
    try {
      const dropped = await sweepStaleStaging(o.pool, o.staleAfterMs);
      if (dropped.length) app.log.info({ dropped }, 'dropped abandoned upload staging tables');
    } catch (err) {
      app.log.warn({ err }, 'could not sweep upload staging tables');
    }
  };
  // Often enough that an abandoned table is gone soon after it became stale; at most once a minute.
  const everyMs = Math.min(60_000, Math.ceil(o.staleAfterMs / 4));
  let timer: NodeJS.Timeout | undefined;
  app.addHook('onReady', async () => {
    void sweep();
    timer = setInterval(() => void sweep(), everyMs).unref();
  });
  app.addHook('onClose', async () => clearInterval(timer));
}
