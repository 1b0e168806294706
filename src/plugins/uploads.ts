// Streamed uploads: `application/x-ndjson` and `text/plain` bodies reach the handler as the raw
// request stream (never buffered whole); handlers read them with lib/lines.ts.
import type { FastifyInstance } from 'fastify';

export const NDJSON = 'application/x-ndjson';
export const TEXT = 'text/plain';

export function installStreamingParsers(app: FastifyInstance) {
  for (const type of [NDJSON, TEXT]) {
    app.addContentTypeParser(type, (_req, payload, done) => done(null, payload));
  }
}
