// GET /v1/operations/{id}/events: the live event stream (server-sent events) that the CLI's
// `watch`, the /ui page and any client follow instead of polling.
import { randomUUID } from 'node:crypto';
import { Type } from '@fastify/type-provider-typebox';
import { AppError, BadRequestError, NotFoundError } from '../../lib/errors.ts';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, IdParams, type App } from '../../lib/schemas.ts';
import { newestEventId, readLive } from './feed.ts';
import { redisReachable } from '../../plugins/redis.ts';
import { streamSlots } from './limits.ts';
import { POLL_MS, streamOperation } from './stream.ts';

const CURSOR = /^(0|[1-9][0-9]{0,17})$/;
const EXAMPLE = [
  'id: 0',
  'event: snapshot',
  'data: {"operation":{"id":"op_lx2k9a1b2c3d4e5f6","state":"running","currentWave":1,"waveCount":5},"waves":[],"probes":null}',
  '',
  'id: 412',
  'event: transition',
  'data: {"seq":412,"action":"operation.wave_started","from":"baking","to":"running","wave":1,"state":"running"}',
  '',
  'id: 412',
  'event: progress',
  'data: {"state":"running","currentWave":1,"counts":{"items":2000,"done":640,"failed":0,"pending":1360,"restored":0}}',
  '',
  ': ping',
  '',
].join('\n');

export default async function eventRoutes(
  app: App,
  opts: { keyPrefix: string; maxPerToken: number; heartbeatMs: number },
) {
  const slots = streamSlots(app.redis, opts.keyPrefix, opts.maxPerToken, Math.max(3 * opts.heartbeatMs, 30_000));
  const open = new Set<AbortController>();
  // Streams never end on their own while an operation runs: end them so shutdown does not wait.
  app.addHook('preClose', async () => {
    for (const c of open) c.abort();
  });

  app.get(
    '/operations/:id/events',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'streamOperationEvents',
        tags: ['operations'],
        summary: 'Follow an operation live (server-sent events)',
        description:
          'A `text/event-stream`: `snapshot` first, then `transition` (every audit event of the operation: approvals, ' +
          `wave starts and settlements, halts, pauses, the terminal state), \`progress\` (per-wave counts, and \`throttled\` / \`waiting\` / \`refused\` as the operation view has them, at most every ${POLL_MS} ms ` +
          'while something changed), `probes` (each bake probe round), `unavailable` / `available` (once each way while the database cannot be read: the stream stays open), and `end` once the operation is terminal or ended, ' +
          'after which the server closes the stream. Every frame has an `id`; reconnect with `Last-Event-ID` (or `?after=`) ' +
          'to resume without a gap in the transitions (`progress` and `probes` are the state at the time, not a history: a reconnect gets the state now, the snapshot with the latest probe round). Heartbeat comments (`: ping`) keep idle streams open. Served from the database, so any ' +
          `API replica serves the same stream. At most BLASTGATE_SSE_MAX_PER_TOKEN (${opts.maxPerToken}) open streams per token (429 TOO_MANY_STREAMS).`,
        params: IdParams('Operation ID', 'op_lx2k9a1b2c3d4e5f6'),
        querystring: Type.Object(
          {
            after: Type.Optional(
              Type.String({
                pattern: CURSOR.source,
                description:
                  'Resume after this event id (same as the Last-Event-ID header, which wins when both are sent); 0 replays every event. An id after the newest event is 400 INVALID_LAST_EVENT_ID',
                // 0, not a typical id: Swagger UI fills the example in, and "412" on a fresh install
                // was after the newest event, a 400 (a trial).
                examples: ['0'],
              }),
            ),
          },
          // A misspelt `after` replayed the whole stream from its start, saying nothing.
          { additionalProperties: false },
        ),
        response: {
          200: {
            description: 'The event stream',
            content: { 'text/event-stream': { schema: Type.String({ example: EXAMPLE }) } },
          },
          ...errorResponses(401, 404),
          400: errorResponse(400, ERROR_EXAMPLES.invalidLastEventId),
          429: errorResponse(429, ERROR_EXAMPLES.tooManyStreams),
        },
      },
    },
    async (req, reply) => {
      const header = req.headers['last-event-id'];
      const raw = typeof header === 'string' && header.length > 0 ? header : req.query.after;
      if (raw !== undefined && !CURSOR.test(raw))
        throw new BadRequestError('INVALID_LAST_EVENT_ID', 'Last-Event-ID must be an event id this stream sent', {
          lastEventId: raw.slice(0, 40),
        });
      const cursor = raw === undefined ? 0 : Number(raw);
      const first = await readLive(app.db.pool, req.params.id, app.queueHolds);
      if (!first) throw new NotFoundError('Operation', req.params.id);
      // Ids are audit seqs, shared by every stream. One past the newest event was never sent: taken
      // as a cursor, it silently withheld every transition up to it (a trial: `Last-Event-ID: 999999`
      // streamed progress and the end, and none of the 8 transitions).
      if (cursor > first.lastSeq) {
        const newest = await newestEventId(app.db.pool);
        if (cursor > newest)
          throw new BadRequestError(
            'INVALID_LAST_EVENT_ID',
            `Last-Event-ID ${cursor} is after the newest event (${newest}): no stream sent it, and the events up to it would be missed`,
            { lastEventId: raw!.slice(0, 40), newest },
          );
      }
      const tokenId = req.principal!.tokenId;
      const streamId = randomUUID();
      // The bound is counted in Redis; the stream itself is read from PostgreSQL. With Redis down the
      // stream opens unbounded rather than failing (the rate limits do the same): `watch` gave up
      // with exit 1 after ~250 s of 503s during a Redis outage while `status` worked (trial Y).
      const acquireOrFailOpen = async (id: string) => {
        if (!redisReachable([app.redis])) {
          req.log.warn({ tokenId }, 'Redis unreachable: event stream opened without its per-token bound');
          return true;
        }
        return slots.acquire(tokenId, id).catch((err: unknown) => {
          req.log.warn({ err, tokenId }, 'stream bound not counted (Redis): event stream opened without it');
          return true;
        });
      };
      if (!(await acquireOrFailOpen(streamId)))
        throw new AppError(
          429,
          'TOO_MANY_STREAMS',
          `This token already has ${opts.maxPerToken} event streams open (BLASTGATE_SSE_MAX_PER_TOKEN); close one first`,
          { max: opts.maxPerToken },
        );
      const controller = new AbortController();
      open.add(controller);
      req.raw.once('close', () => controller.abort());
      reply.hijack();
      reply.raw.writeHead(200, {
        ...(reply.getHeaders() as Record<string, string>),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-transform',
        connection: 'keep-alive',
        // Proxies that buffer responses (nginx) would hold frames back.
        'x-accel-buffering': 'no',
      });
      try {
        await streamOperation({
          db: app.db.pool,
          first,
          cursor,
          out: reply.raw,
          signal: controller.signal,
          heartbeatMs: opts.heartbeatMs,
          renew: () => slots.renew(tokenId, streamId),
          log: req.log,
          holdsOf: app.queueHolds,
        });
      } finally {
        open.delete(controller);
        await slots.release(tokenId, streamId).catch(() => {});
        reply.raw.end();
      }
    },
  );
}
