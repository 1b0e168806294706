// Starts Blastgate. With no DATABASE_URL/REDIS_URL it runs in embedded mode: the project starts
// and owns a local PostgreSQL and Redis under BLASTGATE_DATA_DIR, applies migrations, and runs
// API and workers in this one process on 127.0.0.1:3000.
import closeWithGrace from 'close-with-grace';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { buildApp } from './app.ts';
import { migrate } from './db/migrate.ts';
import { startLocalServices, type LocalServices } from './embedded/local-services.ts';
import { startWorkers, type RunningWorkers } from './worker-runtime.ts';

// The local PostgreSQL and Redis of embedded mode, once started: a start-up that fails later
// (a migration, a port in use) must stop them too, or they outlive the process.
let embedded: LocalServices | undefined;

async function main() {
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  let local: LocalServices | undefined;
  if (!config.databaseUrl || !config.redisUrl) {
    console.log(
      `embedded mode: starting local ${[!config.databaseUrl && 'PostgreSQL', !config.redisUrl && 'Redis'].filter(Boolean).join(' and ')} under ${config.dataDir}/`,
    );
    local = await startLocalServices({ dir: config.dataDir, pgPort: 54329, redisPort: 63799 });
    embedded = local;
  }
  const databaseUrl = config.databaseUrl ?? local!.databaseUrl;
  const redisUrl = config.redisUrl ?? local!.redisUrl;
  const migrated = await migrate(databaseUrl);
  if (migrated.applied.length) console.log(`applied migrations: ${migrated.applied.join(', ')}`);

  const signingSecret =
    config.signingSecret ??
    (local ? embeddedSecret(config, 'signing-secret', () => randomBytes(32).toString('hex')) : undefined);
  const app = await buildApp({ config: { ...config, databaseUrl, redisUrl } });
  // Embedded mode keeps its generated admin token with the data, so restarts do not pile up
  // valid admin tokens and the one printed last time keeps working.
  const newToken = () => `bg_${randomBytes(24).toString('base64url')}`;
  const adminToken = config.adminToken ?? (local ? embeddedSecret(config, 'admin-token', newToken) : newToken());
  await app.authService.ensureBootstrap(adminToken);

  let workers: RunningWorkers | undefined;
  if (config.workersInProcess) {
    workers = await startWorkers({
      databaseUrl,
      redisUrl,
      queuePrefix: config.queuePrefix,
      concurrency: config.workerConcurrency,
      signingSecret,
      logger: app.log,
      metrics: app.metrics,
      lockDurationMs: config.workerLockMs,
    });
  }
  const address = await app.listen({ host: config.host, port: config.port });
  const shown = address.replace('://0.0.0.0', '://127.0.0.1');
  console.log(`\nBlastgate is listening on ${shown}`);
  console.log(`  Swagger UI:  ${shown}/docs`);
  const tokenSource = local ? `kept in ${join(config.dataDir, 'admin-token')}` : 'generated';
  console.log(
    config.adminToken
      ? '  Admin token: from BLASTGATE_ADMIN_TOKEN'
      : `  Admin token: ${adminToken}   (${tokenSource}; set BLASTGATE_ADMIN_TOKEN to choose one)`,
  );
  console.log(`  Workers:     ${workers ? 'running in this process' : 'not in this process (run `npm run worker`)'}\n`);

  closeWithGrace({ delay: 15_000 }, async ({ err }) => {
    if (err) app.log.error({ err }, 'shutting down after an error');
    try {
      await workers?.close();
      await app.close();
    } finally {
      // Even when closing the app failed: the local servers are ours and must not outlive us.
      if (local) {
        local.stop();
        console.log('stopped the local PostgreSQL and Redis');
      }
    }
  });
}

// In embedded mode secrets (the HMAC secret for downstream calls, the bootstrap admin token) are
// generated once and kept in the data dir, readable by the owner only.
function embeddedSecret(config: Config, name: string, generate: () => string): string {
  const file = join(config.dataDir, name);
  if (!existsSync(file)) {
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(file, generate(), { mode: 0o600 });
  }
  return readFileSync(file, 'utf8').trim();
}

main().catch((err: unknown) => {
  console.error(err);
  embedded?.stop();
  process.exit(1);
});
