// Rate limits (@fastify/rate-limit) in Redis, so every replica counts against the same budget.
// Keyed by the authenticated token (its id), or by client IP for requests without one (the public
// routes); the limiter runs right after authentication. Operator commands (config.control) count
// in a budget of their own per token, so a token's submissions can never use up its pause.
// /healthz is never limited. When Redis does not answer, requests pass unlimited (fail open): a
// Redis outage must not take the halt button with it.
import rateLimit from '@fastify/rate-limit';
import type { FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Limits } from '../config.ts';
import { RetryLaterError } from '../lib/errors.ts';
import { documentErrorResponses } from '../lib/schemas.ts';
import { isControlRoute, isLivenessProbe } from '../lib/route-kinds.ts';
import { batchedRedisStore } from './rate-limit-store.ts';

export interface RateLimitOptions {
  limits: Pick<Limits, 'rateLimitMax' | 'rateLimitControlMax' | 'rateLimitWindowMs'>;
  /** Key prefix in Redis (the installation's queue prefix), shared by its replicas. */
  prefix: string;
}

const CONTROL = 'control';
const API = 'api';

/** `<budget>:token:<id>` or `<budget>:ip:<address>`. */
export function rateLimitKey(req: FastifyRequest): string {
  const budget = isControlRoute(req) ? CONTROL : API;
  return req.principal ? `${budget}:token:${req.principal.tokenId}` : `${budget}:ip:${req.ip}`;
}

// ioredis states in which a command would wait for a reconnect instead of answering.
const REDIS_DOWN = new Set(['reconnecting', 'close', 'end']);

export default fp<RateLimitOptions>(
  async (app, o) => {
    const { rateLimitMax: max, rateLimitControlMax: controlMax, rateLimitWindowMs: windowMs } = o.limits;
    documentErrorResponses(app, [429]);
    await app.register(rateLimit, {
      global: true,
      // Route-level onRequest: after the app-level authentication hook, so req.principal is known.
      hook: 'onRequest',
      // One Redis call per key for the requests that arrive while one is out (rate-limit-store.ts).
      store: batchedRedisStore(app.redisLimits, `${o.prefix}:ratelimit:`) as never,
      timeWindow: windowMs,
      keyGenerator: rateLimitKey,
      max: (_req, key) => (key.startsWith(`${CONTROL}:`) ? controlMax : max),
      allowList: (req) => isLivenessProbe(req) || REDIS_DOWN.has(app.redisLimits.status),
      skipOnError: true,
      errorResponseBuilder: (req, ctx) => {
        const key = rateLimitKey(req);
        const control = key.startsWith(`${CONTROL}:`);
        const retryAfterSeconds = Math.max(1, Math.ceil(ctx.ttl / 1000));
        return new RetryLaterError(
          429,
          'RATE_LIMITED',
          `Rate limit of ${ctx.max} ${control ? 'operator commands' : 'requests'} per ${windowMs / 1000} s ` +
            `for this ${req.principal ? 'token' : 'client address'} reached; retry in ${retryAfterSeconds} s`,
          retryAfterSeconds,
          {
            limit: ctx.max,
            windowMs,
            retryAfterSeconds,
            budget: control ? CONTROL : API,
            keyedBy: req.principal ? 'token' : 'ip',
          },
        );
      },
    });
  },
  { name: 'rate-limit', dependencies: ['redis', 'auth'] },
);
