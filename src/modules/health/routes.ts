// Liveness and readiness. /readyz checks the two outside resources the service cannot work without.
import { Type } from '@fastify/type-provider-typebox';
import type { App } from '../../lib/schemas.ts';

const Ready = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
    checks: Type.Object({ postgres: Type.String(), redis: Type.String() }),
  },
  { description: 'Readiness of each dependency', example: { status: 'ok', checks: { postgres: 'ok', redis: 'ok' } } },
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
        description: 'Checks PostgreSQL and Redis; 503 when either does not answer.',
        response: { 200: Ready, 503: Ready },
      },
    },
    async (_req, reply) => {
      const timeout = <T>(p: Promise<T>) =>
        Promise.race([p, new Promise<never>((_, rej) => setTimeout(() => rej(new Error('timeout')), 2000).unref())]);
      const check = async (fn: () => Promise<unknown>) => {
        try {
          await timeout(fn());
          return 'ok';
        } catch (e) {
          return `error: ${(e as Error).message}`;
        }
      };
      const [postgres, redis] = await Promise.all([
        check(() => app.db.pool.query('SELECT 1')),
        check(() => app.redis.ping()),
      ]);
      const ok = postgres === 'ok' && redis === 'ok';
      return reply.status(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unavailable', checks: { postgres, redis } });
    },
  );
}
