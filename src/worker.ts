// `npm run worker`: execution workers as their own process (scale out by running several).
// Needs DATABASE_URL and REDIS_URL: workers never start local servers of their own.
import closeWithGrace from 'close-with-grace';
import pino from 'pino';
import { ConfigError, loadConfig } from './config.ts';
import { startWorkers } from './worker-runtime.ts';

try {
  const config = loadConfig();
  const missing = [!config.databaseUrl && 'DATABASE_URL', !config.redisUrl && 'REDIS_URL'].filter(Boolean);
  if (missing.length) throw new ConfigError([`${missing.join(' and ')} must be set for a separate worker process (npm start runs workers in-process with local servers)`]);
  const logger = pino({ level: config.logLevel });
  const workers = await startWorkers({
    databaseUrl: config.databaseUrl!, redisUrl: config.redisUrl!, queuePrefix: config.queuePrefix,
    concurrency: config.workerConcurrency, signingSecret: config.signingSecret, logger,
    lockDurationMs: config.workerLockMs,
  });
  logger.info({ concurrency: config.workerConcurrency }, 'workers started');
  closeWithGrace({ delay: 30_000 }, async ({ err }) => {
    if (err) logger.error({ err }, 'worker shutting down after an error');
    await workers.close();
  });
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(err instanceof ConfigError ? 2 : 1);
}
