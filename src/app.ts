// Builds the Fastify application. Never listens: src/server.ts does, tests use inject/supertest.
// Load order is written once here: outside resources → cross-cutting plugins → domain routes.
import Fastify from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { randomUUID } from 'node:crypto';
import { DEFAULT_LIMITS, type Config, type Limits } from './config.ts';
import dbPlugin from './plugins/db.ts';
import redisPlugin from './plugins/redis.ts';
import metricsPlugin, { createMetrics, registerLedgerGauges, type Metrics } from './plugins/metrics.ts';
import { registerErasureMetrics } from './modules/erasure/metrics.ts';
import swaggerPlugin from './plugins/swagger.ts';
import helmetPlugin from './plugins/helmet.ts';
import downstreamPlugin from './plugins/downstream.ts';
import { withRedaction } from './lib/logging.ts';
import { DENY_ALL, type DownstreamPolicy } from './modules/adapters/index.ts';
import { frameworkErrors, installErrorHandler, installProtocolAnswers, MAX_PARAM_LENGTH } from './plugins/errors.ts';
import { installJsonParser } from './plugins/json-body.ts';
import { installQueryStringCheck, parseQueryString } from './plugins/query-string.ts';
import { buildSerializer } from './plugins/serializers.ts';
import { buildValidator, TEXT_FORMATS } from './plugins/validation.ts';
import { installContentTypes, installStagingSweeper } from './plugins/uploads.ts';
import { installBodyDeadline, installHandlerDeadline, serverTimeoutOptions } from './plugins/timeouts.ts';
import { installReadDeadline, withReadDeadline } from './plugins/db-deadline.ts';
import rateLimitPlugin from './plugins/rate-limit.ts';
import loadSheddingPlugin from './plugins/under-pressure.ts';
import { ErrorResponse, type App } from './lib/schemas.ts';
import { OperationView, PlanSchema } from './modules/operations/schemas.ts';
import { OperationSummary } from './modules/operations/list.ts';
import authPlugin from './modules/auth/plugin.ts';
import { tokenRepository } from './modules/auth/repository.ts';
import { authService } from './modules/auth/service.ts';
import tokenRoutes from './modules/auth/routes.ts';
import auditRoutes, { installRefusalAudit } from './modules/audit/routes.ts';
import eventRoutes from './modules/events/routes.ts';
import healthRoutes from './modules/health/routes.ts';
import uiRoutes from './modules/ui/routes.ts';
import registryRoutes from './modules/registry/routes.ts';
import operationRoutes from './modules/operations/routes.ts';
import affectedTenantRoutes from './modules/operations/affected-tenants.ts';
import commandRoutes from './modules/execution/routes.ts';
import freezeRoutes from './modules/execution/freeze-routes.ts';
import policyRoutes from './modules/operations/policy-routes.ts';
import purgeRoutes from './modules/purges/routes.ts';
import restoreRoutes from './modules/restores/routes.ts';
import queuesPlugin from './plugins/queues.ts';
import snapshotsPlugin from './plugins/snapshots.ts';
import webhookRoutes from './modules/webhooks/routes.ts';
import { registerWebhookMetrics } from './modules/webhooks/metrics.ts';

const REQUEST_ID = /^[\x21-\x7e]{1,100}$/;

export interface AppOptions {
  config: Pick<Config, 'logLevel'> & {
    databaseUrl: string;
    redisUrl: string;
    queuePrefix?: string;
    metricsToken?: string | undefined;
    /** Unset fields take their defaults (DEFAULT_LIMITS). */
    limits?: Partial<Limits>;
    /** Master key of the snapshot store; the caller checks it against the database (checkSnapshotKey). */
    snapshotKey: Buffer;
  };
  /** Hosts and signing secrets http adapters are checked against when declared (default: none). */
  downstream?: DownstreamPolicy;
  metrics?: Metrics;
  /** Pino logger options; tests pass `false`. */
  logger?: boolean | object;
}

// The response serializer picks anyOf branches with its own ajv: the text formats are known there
// too (what is sent was checked on the way in), instead of warned about as unknown. One object for
// every app of the process, so that they share their serializers (plugins/serializers.ts).
const SERIALIZER_OPTS = { ajv: { formats: Object.fromEntries(TEXT_FORMATS.map((f) => [f, true])) } };

export async function buildApp(opts: AppOptions): Promise<App> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...opts.config.limits };
  const prefix = opts.config.queuePrefix ?? 'blastgate';
  const timeouts = serverTimeoutOptions(limits);
  const app = Fastify({
    // Request deadlines (408 for a request that trickles in, 503 for one not answered in time), and
    // what Node cannot parse answered in the project's error shape.
    ...timeouts,
    // A missing Host header is answered by installProtocolAnswers, in the project's shape.
    http: { ...timeouts.http, requireHostHeader: false },
    logger: withRedaction(opts.logger ?? { level: opts.config.logLevel }),
    // A client's request ID is echoed in answers, logs and the audit log: printable ASCII only.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Path parameters take every ID the registry takes; longer ones are answered by frameworkErrors.
    // A query string that does not decode is refused (installQueryStringCheck), not taken literally.
    routerOptions: { maxParamLength: MAX_PARAM_LENGTH, querystringParser: parseQueryString },
    frameworkErrors,
    // Inline JSON bodies carry at most 100k IDs; bigger lists go as streamed NDJSON/text uploads.
    bodyLimit: 8 * 1024 * 1024,
    serializerOpts: SERIALIZER_OPTS,
    // One serializer per response schema, shared across routes (plugins/serializers.ts).
    schemaController: {
      compilersFactory: { buildValidator: buildValidator as never, buildSerializer: buildSerializer as never },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();

  installErrorHandler(app);
  installProtocolAnswers(app);
  installQueryStringCheck(app);
  await app.register(helmetPlugin);
  installJsonParser(app);
  installContentTypes(app);
  installHandlerDeadline(app, limits.handlerTimeoutMs);
  installBodyDeadline(app, limits.requestTimeoutMs);
  installReadDeadline(app, limits.dbReadTimeoutMs);
  // Shared schemas live at the root so every route plugin can $ref them.
  for (const schema of [ErrorResponse, PlanSchema, OperationView, OperationSummary]) app.addSchema(schema);

  await app.register(dbPlugin, {
    url: opts.config.databaseUrl,
    poolMax: limits.dbPoolMax,
    controlPoolMax: limits.dbControlPoolMax,
    uploadPoolMax: limits.dbUploadPoolMax,
  });
  // A staging table outlives its request only when its process died: twice the longest a request
  // can live is safely past that.
  installStagingSweeper(app, { pool: app.db.uploads, staleAfterMs: 2 * limits.handlerTimeoutMs });
  await app.register(redisPlugin, { url: opts.config.redisUrl });
  await app.register(downstreamPlugin, { policy: opts.downstream ?? DENY_ALL });
  await app.register(metricsPlugin, { metrics: opts.metrics ?? createMetrics(), token: opts.config.metricsToken });
  registerLedgerGauges(app.metrics, app.db.pool);
  registerErasureMetrics(app.metrics, app.db.pool);
  registerWebhookMetrics(app.metrics, app.db.pool);
  await app.register(swaggerPlugin);
  await app.register(queuesPlugin, { prefix });
  await app.register(snapshotsPlugin, { masterKey: opts.config.snapshotKey });

  // Shedding first, so an overloaded process refuses a request before it costs a token lookup.
  await app.register(loadSheddingPlugin, { limits });
  // Token lookups use the control pool: authentication must answer however busy the main pool is.
  // Every request's first statement, and shared by concurrent ones (whichever started it, a GET or
  // a command): a read, bounded as one, so a frozen PostgreSQL answers every request 503 in time.
  const tokens = tokenRepository(app.db.control.pool);
  const lookup = {
    findBySecretHash: (hash: string) => withReadDeadline(limits.dbReadTimeoutMs, () => tokens.findBySecretHash(hash)),
  };
  const auth = authService({ lookup, repo: tokens });
  await app.register(authPlugin, { auth });
  await app.register(rateLimitPlugin, { limits, prefix });
  installRefusalAudit(app);

  await app.register(healthRoutes);
  await app.register(uiRoutes);
  await app.register(
    async (v1) => {
      await v1.register(registryRoutes, { prefix: '/registry' });
      await v1.register(operationRoutes);
      await v1.register(eventRoutes, {
        keyPrefix: prefix,
        maxPerToken: limits.sseMaxPerToken,
        heartbeatMs: limits.sseHeartbeatMs,
      });
      await v1.register(restoreRoutes);
      await v1.register(purgeRoutes);
      await v1.register(affectedTenantRoutes);
      await v1.register(commandRoutes);
      await v1.register(freezeRoutes);
      await v1.register(policyRoutes);
      await v1.register(tokenRoutes, { auth });
      await v1.register(auditRoutes);
      await v1.register(webhookRoutes, { masterKey: opts.config.snapshotKey });
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
