// Which routes are the halt button. Operator commands that stop or steer a live rollout (pause,
// resume, abort, rollback, signals, the global freeze) declare `config.control`: they run on the
// control connection pool, have a rate-limit budget of their own that submissions cannot use up,
// and are never shed under load — the one request that must land is the one that stops damage.
import type { FastifyRequest } from 'fastify';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** An operator command that halts or steers a live operation (see above). */
    control?: boolean;
  }
}

export const isControlRoute = (req: FastifyRequest) => req.routeOptions.config.control === true;

/** A read (GET, HEAD): it changes nothing, so a failure in the middle of it leaves nothing to check. */
export const isReadRequest = (req: Pick<FastifyRequest, 'method'>) => req.method === 'GET' || req.method === 'HEAD';

/** Liveness: answering it is the whole point of it, so it is never limited or shed. */
export const isLivenessProbe = (req: FastifyRequest) => req.routeOptions.url === '/healthz';
