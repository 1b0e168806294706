// Request content types. `application/x-ndjson` and `text/plain` bodies reach the handler as the
// raw request stream (never buffered whole); handlers read them with lib/lines.ts, and stage their
// IDs in tables of their own (modules/operations/staging.ts); the sweeper here drops the tables of
// uploads whose process died before it could. Every route takes exactly the content types its
// schema documents: any other is refused with 415 listing them, before the body is looked at (a
// stream handed to a JSON route, or JSON to an upload route, would otherwise fail in confusing
// ways further on).
import { outageLog } from '../lib/outage-log.ts';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type pg from 'pg';
import { AppError, PayloadTooLargeError } from '../lib/errors.ts';
import { documentErrorResponses, takesBody } from '../lib/schemas.ts';
import { sweepStaleStaging } from '../modules/operations/staging.ts';

export const NDJSON = 'application/x-ndjson';
export const TEXT = 'text/plain';
export const JSON_TYPE = 'application/json';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Content types the route's body may have (from its schema); absent: the route takes no body. */
    accepts?: string[];
    /** Extra advice in a 415 answer, by the refused content type (e.g. where that type is taken). */
    mediaTypeHints?: Record<string, string>;
    /** Largest streamed (NDJSON or text) body the route reads; the reader enforces it as it goes. */
    uploadLimit?: number;
  }
}

/** The content types a route's body schema documents. */
function documentedTypes(body: unknown): string[] | undefined {
  if (!body || typeof body !== 'object') return undefined;
  const content = (body as { content?: Record<string, unknown> }).content;
  return content ? Object.keys(content) : [JSON_TYPE];
}

export const acceptedTypes = (request: FastifyRequest): string[] => request.routeOptions.config.accepts ?? [];

export function unsupportedMediaType(got: string | undefined, accepted: string[], request?: FastifyRequest): AppError {
  const hint = got ? request?.routeOptions.config.mediaTypeHints?.[got] : undefined;
  const takes = accepted.length ? `use ${accepted.join(' or ')}` : 'this route takes no body';
  return new AppError(
    415,
    'UNSUPPORTED_MEDIA_TYPE',
    `Content type ${got || '(none)'} is not accepted here; ${takes}${hint ? `. ${hint}` : ''}`,
    { contentType: got || null, accepted },
  );
}

const UTF8 = new Set(['utf-8', 'utf8', 'us-ascii']);

/** A Content-Encoding other than identity, or a charset other than UTF-8: what is wrong, or null. */
export function encodingProblem(headers: Record<string, string | string[] | undefined>) {
  const encoding = String(headers['content-encoding'] ?? '')
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter((e) => e && e !== 'identity');
  if (encoding.length)
    return {
      message: `Content-Encoding ${encoding.join(', ')} is not accepted: send the body uncompressed, without a Content-Encoding header`,
      details: { contentEncoding: encoding.join(', ') },
    };
  const charset = /;\s*charset\s*=\s*"?([^";\s]*)"?/i.exec(String(headers['content-type'] ?? ''))?.[1]?.toLowerCase();
  if (charset !== undefined && !UTF8.has(charset))
    return {
      message: `Charset ${charset || '(empty)'} is not accepted: bodies are read as UTF-8 (send UTF-8, or leave the charset out)`,
      details: { charset },
    };
  return null;
}

export function installContentTypes(app: FastifyInstance) {
  // Like any body, one too large for the route (413) or of a type it does not read (415): the
  // document named them only where a route said so itself.
  documentErrorResponses(app, [413, 415], takesBody);
  for (const type of [NDJSON, TEXT]) {
    app.addContentTypeParser(type, (req, payload, done) => {
      // Fastify's bodyLimit does not apply to a stream handed over as is: a body declared larger
      // than the route reads is refused now, instead of after the client sent what it declared.
      const limit = req.routeOptions.config.uploadLimit;
      const declared = Number(req.headers['content-length']);
      if (limit !== undefined && declared > limit)
        return done(
          new PayloadTooLargeError(`Body is larger than the ${limit} bytes this route accepts`, { maxBytes: limit }),
          undefined,
        );
      done(null, payload);
    });
  }
  // A body is read as it was sent: compressed, or in a charset other than UTF-8, it failed further
  // on as malformed JSON or invalid IDs, naming neither. Refused before a byte of it is read.
  app.addHook('preParsing', async (request, _reply, payload) => {
    const accepted = request.routeOptions.config.accepts;
    const problem = accepted && encodingProblem(request.headers);
    if (problem) throw new AppError(415, 'UNSUPPORTED_MEDIA_TYPE', problem.message, { ...problem.details, accepted });
    // A type the route does not take is refused before its parser reads the body: an ID list sent
    // to the text route as application/json failed as malformed JSON, not as the wrong type.
    const media = request.mediaType;
    if (accepted && request.headers['content-type'] !== undefined && media && !accepted.includes(media))
      throw unsupportedMediaType(media, accepted, request);
    return payload;
  });
  app.addHook('onRoute', (route) => {
    const accepts = documentedTypes(route.schema?.body);
    if (accepts) route.config = { ...route.config, accepts };
  });
  app.addHook('preValidation', async (request) => {
    const accepted = request.routeOptions.config.accepts;
    if (!accepted) return;
    // No body at all: a JSON-only route's schema validation answers (400, "body must be object");
    // a route that takes several types, or only a streamed one, cannot tell which was meant.
    if (
      request.body === undefined &&
      !request.headers['content-type'] &&
      accepted.length === 1 &&
      accepted[0] === JSON_TYPE
    )
      return;
    const media = request.mediaType;
    if (!media || !accepted.includes(media)) throw unsupportedMediaType(media || undefined, accepted, request);
  });
}

/**
 * Drops staging tables older than `staleAfterMs` (at start-up, then every so often): no live
 * request can own one, so its process died mid-upload. Any replica may drop any of them.
 */
export function installStagingSweeper(app: FastifyInstance, o: { pool: pg.Pool; staleAfterMs: number }) {
  // A PostgreSQL that is away fails every sweep alike: said once (outage-log.ts).
  const away = outageLog(app.log, 'upload staging sweep');
  const sweep = async () => {
    try {
      const dropped = await sweepStaleStaging(o.pool, o.staleAfterMs);
      away.ok();
      if (dropped.length) app.log.info({ dropped }, 'dropped abandoned upload staging tables');
    } catch (err) {
      away.caught(err, () => app.log.warn({ err }, 'could not sweep upload staging tables'));
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
