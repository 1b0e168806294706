// `npm run worker`: execution workers as their own process (scale out by running several).
// Needs DATABASE_URL and REDIS_URL: workers never start local servers of their own.
import { getPriority } from 'node:os';
import closeWithGrace from 'close-with-grace';
import { SHUTDOWN_SIGNALS, signalCounter } from './lib/signals.ts';
import pino from 'pino';
import { createMetrics, serveMetrics } from './plugins/metrics.ts';
import { redisProblem } from './plugins/redis.ts';
import { withRedaction } from './lib/logging.ts';
import { ConfigError, loadConfig } from './config.ts';
import { unknownSettings } from './lib/env-names.ts';
import { startWorkers } from './worker-runtime.ts';
import { lowerPriority } from './lib/priority.ts';

try {
  for (const w of unknownSettings(process.env)) console.warn(w);
  const config = loadConfig();
  const missing = [!config.databaseUrl && 'DATABASE_URL', !config.redisUrl && 'REDIS_URL'].filter(Boolean);
  if (missing.length)
    throw new ConfigError([
      `${missing.join(' and ')} must be set for a separate worker process (npm start runs workers in-process with local servers)`,
    ]);
  const redisError = await redisProblem(config.redisUrl!);
  if (redisError) throw redisError;
  const logger = pino(withRedaction({ level: config.logLevel }));
  // Chunk work yields the CPU to the API's reads and commands where they share a host: under a
  // full-speed run on 2 shared cores, GET /v1/operations/{id} p99 went from 152–185 to 94–112 ms
  // (npm run bench -- control).
  const nice = config.workerNice > 0 ? lowerPriority(config.workerNice) : { now: getPriority() };
  if (nice.problem) logger.warn({ err: nice.problem, nice: config.workerNice }, 'could not lower the worker priority');
  const metrics = createMetrics();
  const workers = await startWorkers({
    metrics,
    databaseUrl: config.databaseUrl!,
    redisUrl: config.redisUrl!,
    queuePrefix: config.queuePrefix,
    concurrency: config.workerConcurrency,
    // A worker has no embedded mode, so no generated default: BLASTGATE_SIGNING_SECRET or none.
    downstream: { allow: config.downstreamAllow, secrets: config.signingSecrets },
    // loadConfig requires it with DATABASE_URL, which a worker process always has.
    snapshotKey: config.snapshotKey!,
    logger,
    lockDurationMs: config.workerLockMs,
    purgeProposalCron: config.purgeProposalCron,
    webhooks: config.webhooks,
    backendNice: config.workerNice,
  });
  // Worker-side counters (items by outcome, halts decided here) for Prometheus, when asked for.
  const metricsPort = config.workerMetricsPort;
  const server =
    metricsPort === undefined
      ? undefined
      : await serveMetrics(metrics, { host: config.metricsHost, port: metricsPort, token: config.metricsToken });
  logger.info(
    {
      concurrency: config.workerConcurrency,
      queuePrefix: config.queuePrefix,
      nice: nice.now,
      metricsPort: metricsPort ?? null,
    },
    'workers started',
  );
  const grace = closeWithGrace(
    // SIGINT, SIGTERM and SIGHUP are counted below: npm forwards the group's signal a second time.
    { delay: config.shutdownTimeoutMs, skip: [...SHUTDOWN_SIGNALS] },
    async ({ err }) => {
      if (err) logger.error({ err }, 'worker shutting down after an error');
      server?.close();
      await workers.close();
      logger.info('workers stopped');
    },
  );
  const onSignal = signalCounter(
    (signal) => {
      logger.info({ signal, waitMs: config.shutdownTimeoutMs }, 'shutting down: finishing the jobs in hand');
      void grace.close();
    },
    (signal) => {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    },
  );
  for (const s of SHUTDOWN_SIGNALS) process.on(s, onSignal);
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(err instanceof ConfigError ? 2 : 1);
}
