// Liveness and readiness. /readyz checks the two outside resources the service cannot work without.
// It is public (load balancers call it), so it names what fails and never says how: a raw error
// carries hosts, ports and user names. The raw error goes to the log.
import { Type } from '@fastify/type-provider-typebox';
import type { App } from '../../lib/schemas.ts';
import { DatabaseTimeoutError, withReadDeadline } from '../../plugins/db-deadline.ts';

const DEPENDENCIES = ['postgres', 'redis'] as const;
// Shorter than a load balancer's usual health-check timeout, long enough for a busy pool.
const CHECK_TIMEOUT_MS = 2000;

const Check = Type.Union([Type.Literal('ok'), Type.Literal('error'), Type.Literal('timeout')], {
  description: '`ok`, `error` (it answered with an error or refused the connection) or `timeout` (no answer in 2 s)',
});
const Ready = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
    failing: Type.Array(Type.Union([Type.Literal('postgres'), Type.Literal('redis')]), {
      description: 'The dependencies that failed their check (empty when ready)',
    }),
    checks: Type.Object({ postgres: Check, redis: Check }),
  },
  {
    description: 'Readiness of each dependency; the errors themselves are logged, not shown',
    example: { status: 'unavailable', failing: ['redis'], checks: { postgres: 'ok', redis: 'error' } },
  },
);

export default async function healthRoutes(app: App) {
  app.get(
    '/healthz',
    {
      schema: {
        operationId: 'healthz',
        tags: ['health'],
        summary: 'Liveness',
        description: 'The process is up and serving HTTP.',
        response: {
          200: Type.Object({ status: Type.Literal('ok') }, { description: 'Alive', example: { status: 'ok' } }),
        },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'readyz',
        tags: ['health'],
        summary: 'Readiness',
        description:
          'Checks PostgreSQL and Redis; 503 when either does not answer, naming it in `failing` (the error itself is in the server log).',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (req, reply) => {
      const TIMEOUT = Symbol('timeout');
      const check = async (dependency: (typeof DEPENDENCIES)[number], fn: () => Promise<unknown>) => {
        let timer: NodeJS.Timeout | undefined;
        try {
          const r = await Promise.race([
            fn(),
            new Promise<typeof TIMEOUT>((resolve) => (timer = setTimeout(() => resolve(TIMEOUT), CHECK_TIMEOUT_MS))),
          ]);
          if (r !== TIMEOUT) return 'ok' as const;
          req.log.warn({ dependency }, `readiness: ${dependency} did not answer within ${CHECK_TIMEOUT_MS} ms`);
          return 'timeout' as const;
        } catch (err) {
          if (err instanceof DatabaseTimeoutError) {
            req.log.warn({ dependency }, `readiness: ${dependency} did not answer within ${CHECK_TIMEOUT_MS} ms`);
            return 'timeout' as const;
          }
          req.log.warn({ err, dependency }, `readiness: ${dependency} failed`);
          return 'error' as const;
        } finally {
          clearTimeout(timer);
        }
      };
      const [postgres, redis] = await Promise.all([
        // Its own deadline, not the read deadline: a connection that does not answer is dropped when
        // the check gives up on it, instead of staying checked out until the read deadline.
        check('postgres', () => withReadDeadline(CHECK_TIMEOUT_MS, () => app.db.pool.query('SELECT 1'))),
        check('redis', () => app.redis.ping()),
      ]);
      const checks = { postgres, redis };
      const failing = DEPENDENCIES.filter((d) => checks[d] !== 'ok');
      return reply.status(failing.length ? 503 : 200).send({
        status: failing.length ? 'unavailable' : 'ok',
        failing,
        checks,
      });
    },
  );
}
