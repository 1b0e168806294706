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
  // What the log last said of each dependency: an outage is logged when it begins and when it
  // ends, once each. Probed every few seconds, every failed probe logged a warning
  // with the driver's stack: ~20 lines per dependency and minute of an outage (a trial).
  const said: Record<(typeof DEPENDENCIES)[number], string> = { postgres: 'ok', redis: 'ok' };
  const tell = (req: { log: App['log'] }, dependency: (typeof DEPENDENCIES)[number], now: string, err?: unknown) => {
    // A failing dependency alternates between refusing and not answering: one outage either way.
    if (said[dependency] === now || (said[dependency] !== 'ok' && now !== 'ok')) return;
    const was = said[dependency];
    said[dependency] = now;
    if (now === 'ok') return req.log.info({ dependency }, `readiness: ${dependency} answers again (was ${was})`);
    if (now === 'timeout')
      return req.log.warn({ dependency }, `readiness: ${dependency} did not answer within ${CHECK_TIMEOUT_MS} ms`);
    const e = err as { code?: unknown; message?: unknown } | undefined;
    req.log.warn({ dependency, code: e?.code, error: String(e?.message ?? err) }, `readiness: ${dependency} failed`);
  };
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
          if (r !== TIMEOUT) {
            tell(req, dependency, 'ok');
            return 'ok' as const;
          }
          tell(req, dependency, 'timeout');
          return 'timeout' as const;
        } catch (err) {
          if (err instanceof DatabaseTimeoutError) {
            tell(req, dependency, 'timeout');
            return 'timeout' as const;
          }
          tell(req, dependency, 'error', err);
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
