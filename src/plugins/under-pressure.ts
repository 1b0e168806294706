// Load shedding (@fastify/under-pressure): when the event loop falls behind — its mean delay or
// its utilisation over the last second passes a limit — new requests are refused at once with 503
// OVERLOADED and Retry-After, before they cost a database query, so the process recovers instead
// of stalling. Only /v1 routes are shed, and never operator commands (config.control): stopping a
// rollout is the work that must still get through; health, metrics and docs are cheap, and probes
// must not flap because the API is busy.
import underPressure from '@fastify/under-pressure';
import fp from 'fastify-plugin';
import type { Limits } from '../config.ts';
import { RetryLaterError } from '../lib/errors.ts';
import { isControlRoute } from '../lib/route-kinds.ts';

export interface LoadSheddingOptions {
  limits: Pick<Limits, 'maxEventLoopDelayMs' | 'maxEventLoopUtilization'>;
}

// The sampler's period: pressure is judged over the last second, and clears a second after it ends.
const SAMPLE_INTERVAL_MS = 1_000;
const RETRY_AFTER_S = 2;

export default fp<LoadSheddingOptions>(
  async (app, o) => {
    const { maxEventLoopDelayMs, maxEventLoopUtilization } = o.limits;
    await app.register(underPressure, {
      maxEventLoopDelay: maxEventLoopDelayMs,
      maxEventLoopUtilization,
      // Utilisation over the last sample, not since start-up (the plugin's default).
      eventLoopUtilizationMode: 'interval',
      sampleInterval: SAMPLE_INTERVAL_MS,
      retryAfter: RETRY_AFTER_S,
      pressureHandler: (req, _reply, type, value) => {
        if (isControlRoute(req) || !req.routeOptions.url?.startsWith('/v1')) return;
        const limit = type === 'eventLoopDelay' ? maxEventLoopDelayMs : maxEventLoopUtilization;
        return Promise.reject(
          new RetryLaterError(
            503,
            'OVERLOADED',
            `The API is shedding load (${type} ${round(value)} over its limit of ${limit}); retry in ${RETRY_AFTER_S} s`,
            RETRY_AFTER_S,
            { reason: type, value: round(value), limit },
          ),
        );
      },
    });
  },
  { name: 'load-shedding' },
);

const round = (v: number | undefined) => (v === undefined ? null : Math.round(v * 1000) / 1000);
