// `npm run worker`: execution workers as their own process (scale out by running several).
// Needs DATABASE_URL and REDIS_URL: workers never start local servers of their own.
import closeWithGrace from 'close-with-grace';
import { createServer } from 'node:http';
import pino from 'pino';
import { createMetrics } from './plugins/metrics.ts';
import { ConfigError, loadConfig } from './config.ts';
import { startWorkers } from './worker-runtime.ts';

try {
  const config = loadConfig();
  const missing = [!config.databaseUrl && 'DATABASE_URL', !config.redisUrl && 'REDIS_URL'].filter(Boolean);
  if (missing.length)
    throw new ConfigError([
      `${missing.join(' and ')} must be set for a separate worker process (npm start runs workers in-process with local servers)`,
    ]);
  const logger = pino({ level: config.logLevel });
  const metrics = createMetrics();
  const workers = await startWorkers({
    metrics,
    databaseUrl: config.databaseUrl!,
    redisUrl: config.redisUrl!,
    queuePrefix: config.queuePrefix,
    concurrency: config.workerConcurrency,
    signingSecret: config.signingSecret,
    // loadConfig requires it with DATABASE_URL, which a worker process always has.
    snapshotKey: config.snapshotKey!,
    logger,
    lockDurationMs: config.workerLockMs,
  });
  // Worker-side counters (items by outcome, halts decided here) for Prometheus, when asked for.
  const metricsPort = Number(process.env.BLASTGATE_WORKER_METRICS_PORT ?? 0);
  const server = metricsPort
    ? createServer((req, res) => {
        if (req.url !== '/metrics') return void res.writeHead(404).end();
        void metrics.registry
          .metrics()
          .then((text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text));
      }).listen(metricsPort, config.host)
    : undefined;
  logger.info({ concurrency: config.workerConcurrency, metricsPort: metricsPort || null }, 'workers started');
  closeWithGrace({ delay: config.shutdownTimeoutMs }, async ({ err }) => {
    if (err) logger.error({ err }, 'worker shutting down after an error');
    server?.close();
    await workers.close();
  });
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(err instanceof ConfigError ? 2 : 1);
}
