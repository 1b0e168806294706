// Builds the Fastify application. Never listens: src/server.ts does, tests use inject/supertest.
// Load order is written once here: outside resources → cross-cutting plugins → domain routes.
import Fastify from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { randomUUID } from 'node:crypto';
import type { Config } from './config.ts';
import dbPlugin from './plugins/db.ts';
import redisPlugin from './plugins/redis.ts';
import metricsPlugin, { createMetrics, registerLedgerGauges, type Metrics } from './plugins/metrics.ts';
import swaggerPlugin from './plugins/swagger.ts';
import { installErrorHandler } from './plugins/errors.ts';
import { buildValidator } from './plugins/validation.ts';
import { installStreamingParsers } from './plugins/uploads.ts';
import { ErrorResponse, type App } from './lib/schemas.ts';
import { OperationView, PlanSchema } from './modules/operations/schemas.ts';
import authPlugin from './modules/auth/plugin.ts';
import { tokenRepository } from './modules/auth/repository.ts';
import { authService } from './modules/auth/service.ts';
import tokenRoutes from './modules/auth/routes.ts';
import auditRoutes, { installRefusalAudit } from './modules/audit/routes.ts';
import healthRoutes from './modules/health/routes.ts';
import registryRoutes from './modules/registry/routes.ts';
import operationRoutes from './modules/operations/routes.ts';
import affectedTenantRoutes from './modules/operations/affected-tenants.ts';
import commandRoutes from './modules/execution/routes.ts';
import freezeRoutes from './modules/execution/freeze-routes.ts';
import policyRoutes from './modules/operations/policy-routes.ts';
import restoreRoutes from './modules/restores/routes.ts';
import queuesPlugin from './plugins/queues.ts';
import snapshotsPlugin from './plugins/snapshots.ts';

export interface AppOptions {
  config: Pick<Config, 'logLevel'> & {
    databaseUrl: string;
    redisUrl: string;
    queuePrefix?: string;
    /** Master key of the snapshot store; the caller checks it against the database (checkSnapshotKey). */
    snapshotKey: Buffer;
  };
  metrics?: Metrics;
  /** Pino logger options; tests pass `false`. */
  logger?: boolean | object;
}

export async function buildApp(opts: AppOptions): Promise<App> {
  const app = Fastify({
    logger: opts.logger ?? { level: opts.config.logLevel },
    genReqId: (req) =>
      typeof req.headers['x-request-id'] === 'string' && req.headers['x-request-id'].length <= 100
        ? req.headers['x-request-id']
        : randomUUID(),
    // Inline JSON bodies carry at most 100k IDs; bigger lists go as streamed NDJSON/text uploads.
    bodyLimit: 8 * 1024 * 1024,
    schemaController: { compilersFactory: { buildValidator: buildValidator as never } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  installErrorHandler(app);
  installStreamingParsers(app);
  // Shared schemas live at the root so every route plugin can $ref them.
  for (const schema of [ErrorResponse, PlanSchema, OperationView]) app.addSchema(schema);

  await app.register(dbPlugin, { url: opts.config.databaseUrl });
  await app.register(redisPlugin, { url: opts.config.redisUrl });
  await app.register(metricsPlugin, { metrics: opts.metrics ?? createMetrics() });
  registerLedgerGauges(app.metrics, app.db.pool);
  await app.register(swaggerPlugin);
  await app.register(queuesPlugin, { prefix: opts.config.queuePrefix ?? 'blastgate' });
  await app.register(snapshotsPlugin, { masterKey: opts.config.snapshotKey });

  const auth = authService(tokenRepository(app.db.prisma));
  await app.register(authPlugin, { auth });
  installRefusalAudit(app);

  await app.register(healthRoutes);
  await app.register(
    async (v1) => {
      await v1.register(registryRoutes, { prefix: '/registry' });
      await v1.register(operationRoutes);
      await v1.register(restoreRoutes);
      await v1.register(affectedTenantRoutes);
      await v1.register(commandRoutes);
      await v1.register(freezeRoutes);
      await v1.register(policyRoutes);
      await v1.register(tokenRoutes, { auth });
      await v1.register(auditRoutes);
    },
    { prefix: '/v1' },
  );

  app.decorate('authService', auth);
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    authService: ReturnType<typeof authService>;
  }
}
