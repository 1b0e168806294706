// Starts Blastgate. With no DATABASE_URL/REDIS_URL it runs in embedded mode: the project starts
// and owns a local PostgreSQL and Redis under BLASTGATE_DATA_DIR, applies migrations, and runs
// API and workers in this one process on 127.0.0.1:3000.
import { warmSerializers } from './plugins/serializers.ts';
import closeWithGrace from 'close-with-grace';
import { SHUTDOWN_SIGNALS, signalCounter } from './lib/signals.ts';
import { checkListen, listeners, listenProblem } from './lib/listen.ts';
import { watchLocalServers } from './embedded/watch.ts';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, SNAPSHOT_KEY_FORMS, type Config } from './config.ts';
import { buildApp } from './app.ts';
import { databaseProblem, migrate } from './db/migrate.ts';
import { collationHint, databaseCollation } from './db/collation.ts';
import {
  localDatabaseBesideSharedRedis,
  startSomeLocalServices,
  type SomeLocalServices,
} from './embedded/local-services.ts';
import { DataDirInUseError } from './embedded/owner-lock.ts';
import { misspeltConnections, unknownSettings } from './lib/env-names.ts';
import { startWorkers, type RunningWorkers } from './worker-runtime.ts';
import { serveMetrics } from './plugins/metrics.ts';
import { redisProblem } from './plugins/redis.ts';
import type { App } from './lib/schemas.ts';
import { BootstrapRefused } from './modules/auth/bootstrap.ts';
import { generateToken } from './modules/auth/secrets.ts';
import { parseMasterKey } from './modules/snapshots/crypto.ts';
import { checkSnapshotKey } from './modules/snapshots/key-check.ts';
import { prefixWarning, recordQueuePrefix } from './modules/execution/prefix-check.ts';
import { workerCommand } from './embedded/worker-hint.ts';
import { EMBEDDED_ALLOW } from './modules/adapters/host-allowlist.ts';

// The local PostgreSQL and Redis of embedded mode, once started (or taken over from an earlier
// run): they must not outlive this process, however it ends — a clean shutdown, a shutdown that
// times out, a second Ctrl-C, a start-up that fails later (a migration, a port in use). 'exit'
// listeners run on every process.exit(), and stop() is synchronous, verifies that the servers are
// gone and says what is true.
let embedded: SomeLocalServices | undefined;
/** Stops watching the local servers (watchLocalServers), before they are stopped on purpose. */
let unwatch: (() => void) | undefined;
function stopEmbedded() {
  unwatch?.();
  const services = embedded;
  embedded = undefined;
  if (!services) return;
  const report = services.stop();
  if (report.ok) console.log(report.message);
  else console.error(report.message);
}
process.on('exit', stopEmbedded);

// Until the graceful shutdown below is installed, Ctrl-C / SIGTERM exits at once (the 'exit'
// listener stops the local servers) — except while the local servers are being started: then it
// waits until they are up, so that it can stop them. This listener is never removed: removing the
// last listener of a signal stops Node's watcher for it, and a signal delivered at that moment
// (Ctrl-C right as the banner appears) is dropped and the process keeps running.
let phase: 'starting' | 'starting-local' | 'running' = 'starting';
let interrupted: NodeJS.Signals | undefined;
const exitOnSignal = (signal: NodeJS.Signals) => process.exit(128 + (constants.signals[signal] ?? 0));
/** Once running: the graceful shutdown (see main), given each SIGINT, SIGTERM and SIGHUP. */
let onRunningSignal: ((signal: NodeJS.Signals) => void) | undefined;
function onStartupSignal(signal: NodeJS.Signals) {
  if (phase === 'running') return onRunningSignal?.(signal);
  if (phase === 'starting-local') {
    if (!interrupted) console.log(`${signal}: exiting once the local servers are up, to stop them`);
    interrupted = signal;
    return;
  }
  console.log(`${signal} during start-up: exiting`);
  exitOnSignal(signal);
}
for (const s of SHUTDOWN_SIGNALS) process.on(s, onStartupSignal);

async function main() {
  for (const w of unknownSettings(process.env)) console.warn(w);
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
  const mixed = localDatabaseBesideSharedRedis(config, process.env, misspeltConnections(process.env));
  if (mixed) throw mixed; // a ConfigError: main().catch says it and exits 2
  for (const [host, port, vars] of listeners(config)) {
    const problem = await checkListen(host, port, vars);
    if (problem) throw problem;
  }
  // Before anything starts, so that a damaged key file stops the start at once.
  const snapshotKey = config.snapshotKey ?? embeddedSnapshotKey(config);
  let local: SomeLocalServices | undefined;
  // Only what the configuration does not name: a start given REDIS_URL runs no local Redis.
  const wanted = { postgres: !config.databaseUrl, redis: !config.redisUrl };
  const localNames = [wanted.postgres && 'PostgreSQL', wanted.redis && 'Redis'].filter(Boolean).join(' and ');
  if (wanted.postgres || wanted.redis) {
    console.log(`embedded mode: starting local ${localNames} under ${config.dataDir}/`);
    phase = 'starting-local';
    local = await startSomeLocalServices(
      { dir: config.dataDir, pgPort: config.embeddedPgPort, redisPort: config.embeddedRedisPort },
      wanted,
    );
    embedded = local;
    if (interrupted) exitOnSignal(interrupted);
    phase = 'starting';
  }
  const databaseUrl = config.databaseUrl ?? local?.databaseUrl;
  const redisUrl = config.redisUrl ?? local?.redisUrl;
  if (!databaseUrl || !redisUrl) throw new Error('no database or Redis to use after the local start');
  const migrated = await migrate(databaseUrl).catch((err: unknown) => {
    throw databaseProblem(err, databaseUrl) ?? err;
  });
  if (migrated.applied.length) console.log(`applied migrations: ${migrated.applied.join(', ')}`);
  const redisError = await redisProblem(redisUrl);
  if (redisError) throw redisError;

  // The default signing secret: BLASTGATE_SIGNING_SECRET, or embedded mode's generated one.
  const downstream = {
    allow: config.downstreamAllow,
    secrets: config.signingSecrets.hasDefault
      ? config.signingSecrets
      : config.signingSecrets.withDefault(
          local ? embeddedSecret(config, 'signing-secret', () => randomBytes(32).toString('hex')) : undefined,
        ),
  };
  const app = await buildApp({ config: { ...config, databaseUrl, redisUrl, snapshotKey }, downstream });
  await checkSnapshotKey(app.db.pool, snapshotKey);
  // Only a hint: a start never fails for it.
  const hint = collationHint(await databaseCollation(app.db.pool).catch(() => 'C'));
  if (hint) app.log.info(hint);
  const otherPrefixes = await recordQueuePrefix(app.db.pool, config.queuePrefix, 'api').catch(() => []);
  if (otherPrefixes.length)
    app.log.warn({ queuePrefix: config.queuePrefix }, prefixWarning(config.queuePrefix, otherPrefixes));
  let adminLine: string;
  try {
    adminLine = await bootstrapAdmin(app, config, Boolean(local));
  } catch (err) {
    if (!(err instanceof BootstrapRefused)) throw err;
    console.error(
      `Blastgate cannot start: ${err.message}. Set BLASTGATE_ADMIN_TOKEN to a new secret (at least 24 characters): ` +
        'it creates an admin token only while no active admin token exists, and it is never printed',
    );
    await app.close();
    process.exit(2);
  }

  let workers: RunningWorkers | undefined;
  if (config.workersInProcess) {
    workers = await startWorkers({
      databaseUrl,
      redisUrl,
      queuePrefix: config.queuePrefix,
      concurrency: config.workerConcurrency,
      downstream,
      snapshotKey,
      logger: app.log,
      metrics: app.metrics,
      lockDurationMs: config.workerLockMs,
      purgeProposalCron: config.purgeProposalCron,
      webhooks: config.webhooks,
      backendNice: config.workerNice,
    });
  }
  let address: string;
  let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | undefined;
  try {
    address = await app.listen({ host: config.host, port: config.port });
    metricsServer =
      config.metricsPort === undefined
        ? undefined
        : await serveMetrics(app.metrics, {
            host: config.metricsHost,
            port: config.metricsPort,
            token: config.metricsToken,
          });
  } catch (err) {
    // Taken since the check above (another process was quicker): said the same way.
    // Node's listen error carries the port it failed on.
    const failed = (err as { port?: number }).port;
    const [host, port, vars] = listeners(config).find(([, p]) => p === failed) ?? listeners(config)[0]!;
    const problem = listenProblem(err, host, port, vars);
    if (!problem) throw err;
    await workers?.close();
    await app.close();
    throw problem;
  }
  const shown = address.replace('://0.0.0.0', '://127.0.0.1');
  // One write, so a reader of the pipe (a supervisor, a test waiting for "listening on") never sees
  // the address without the admin-token and workers lines that belong to it.
  console.log(
    [
      `\nBlastgate is listening on ${shown}`,
      `  Swagger UI:  ${shown}/docs`,
      `  Live view:   ${shown}/ui`,
      `  Admin token: ${adminLine}`,
      `  Workers:     ${
        workers
          ? 'running in this process'
          : `not in this process; start one (or more, from a shell with this one's settings) with\n    ${workerCommand({
              dataDir: config.dataDir,
              cwd: process.cwd(),
              localDatabaseUrl: local?.databaseUrl,
              localRedisUrl: local?.redisUrl,
              keyFromDataDir: config.snapshotKey === undefined,
              secretFromDataDir: Boolean(local) && !config.signingSecrets.hasDefault,
              ...(local && !process.env.BLASTGATE_DOWNSTREAM_ALLOW ? { embeddedAllow: EMBEDDED_ALLOW } : {}),
            })}`
      }\n`,
    ].join('\n'),
  );

  // Each response serializer's first answer compiles its validators (plugins/serializers.ts): done
  // now, in the background, a serializer per turn of the event loop, not on an operator's pause.
  void warmSerializers().then(
    (n) => app.log.debug({ serializers: n }, 'response serializers warmed'),
    (err: unknown) => app.log.warn({ err }, 'warming the response serializers failed'),
  );

  const servers = local ? ` and stopping the local ${localNames}` : '';
  const grace = closeWithGrace(
    {
      delay: config.shutdownTimeoutMs,
      // Ctrl-C, SIGTERM and SIGHUP are counted below (onRunningSignal); the rest (errors, other
      // signals) close the same way.
      skip: [...SHUTDOWN_SIGNALS],
      // Both end in process.exit(1), whose 'exit' listener stops the local servers.
      onTimeout: (ms) =>
        console.error(`shutdown did not finish within ${ms} ms (BLASTGATE_SHUTDOWN_TIMEOUT_MS): exiting${servers}`),
      onSecondSignal: (signal) => console.error(`second ${signal}: exiting now${servers}`),
    },
    async ({ err }) => {
      unwatch?.(); // the local servers are about to be stopped on purpose
      if (err) app.log.error({ err }, 'shutting down after an error');
      try {
        await workers?.close();
        metricsServer?.close();
        await app.close();
      } finally {
        // Even when closing the app failed: the local servers are ours and must not outlive us.
        stopEmbedded();
      }
    },
  );
  onRunningSignal = signalCounter(
    (signal) => {
      console.log(
        `${signal}: shutting down (waiting up to ${config.shutdownTimeoutMs} ms for requests and jobs; press Ctrl-C again to exit now)`,
      );
      void grace.close();
    },
    (signal) => {
      console.error(`second ${signal}: exiting now${servers}`);
      process.exit(1);
    },
  );
  if (local) unwatch = watchLocalServers(local.servers, config.dataDir, (m) => console.error(m));
  phase = 'running';
}

/**
 * Makes sure an admin token exists (see src/modules/auth/bootstrap.ts) and says, for the banner,
 * where it comes from. Only embedded mode — one person's local copy, whose data folder holds the
 * secret anyway — generates and prints a secret; elsewhere BLASTGATE_ADMIN_TOKEN bootstraps the
 * first admin token and is never printed, and a start with no admin token at all is refused.
 */
async function bootstrapAdmin(app: App, config: Config, embeddedMode: boolean): Promise<string> {
  if (config.adminToken || !embeddedMode) {
    const r = await app.authService.ensureBootstrap(config.adminToken);
    if (r.kind === 'ignored') console.warn(`BLASTGATE_ADMIN_TOKEN is not used: ${r.why}`);
    if (r.kind === 'created') return 'bootstrapped from BLASTGATE_ADMIN_TOKEN (not printed)';
    if (r.kind === 'active') return 'BLASTGATE_ADMIN_TOKEN is an active admin token (not printed)';
    return 'not printed; manage tokens with an admin token you hold (/v1/admin/tokens)';
  }
  const file = join(config.dataDir, 'admin-token');
  const kept = existsSync(file) ? readFileSync(file, 'utf8').trim() : undefined;
  try {
    const r = await app.authService.ensureBootstrap(kept);
    if (r.kind === 'created' || r.kind === 'active') return `${kept}   (kept in ${file}; it survives restarts)`;
    if (r.kind === 'ignored') return `the one kept in ${file} is not used: ${r.why}; use an admin token you hold`;
    return `admin tokens exist; none is kept in ${file}`;
  } catch (err) {
    if (!(err instanceof BootstrapRefused)) throw err;
    // No active admin token at all (a new data folder, or the kept one was revoked or expired):
    // a new secret, kept for the next start. The old token stays as it is.
    mkdirSync(config.dataDir, { recursive: true });
    const secret = generateToken();
    writeFileSync(file, secret, { mode: 0o600 });
    await app.authService.ensureBootstrap(secret);
    return `${secret}   (kept in ${file}; it survives restarts)`;
  }
}

// In embedded mode secrets (the HMAC secret for downstream calls, the snapshot master key) are
// generated once and kept in the data dir, readable by the owner only.
function embeddedSecret(config: Config, name: string, generate: () => string): string {
  const file = join(config.dataDir, name);
  if (!existsSync(file)) {
    mkdirSync(config.dataDir, { recursive: true });
    writeFileSync(file, generate(), { mode: 0o600 });
  }
  return readFileSync(file, 'utf8').trim();
}

// config.ts requires a key whenever PostgreSQL is not embedded. The embedded one keeps its key with
// its data, generated once. A damaged key file stops the start rather than being replaced; a
// deleted one is generated anew and then refused by the database's fingerprint (checkSnapshotKey):
// a new key could read none of the snapshots already taken.
function embeddedSnapshotKey(config: Config): Buffer {
  const text = embeddedSecret(config, 'snapshot-key', () => randomBytes(32).toString('base64'));
  const key = parseMasterKey(text);
  if (!key)
    throw new ConfigError([
      `${join(config.dataDir, 'snapshot-key')} does not hold a valid snapshot key (${SNAPSHOT_KEY_FORMS}); put the original back, or set BLASTGATE_SNAPSHOT_KEY — without it the snapshots in this data folder cannot be read`,
    ]);
  return key;
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof DataDirInUseError) {
    console.error(err.message);
    process.exit(2); // the 'exit' listener stops the local servers
  }
  // Ctrl-C in a terminal also reaches the child processes of the start-up (initdb, pg_ctl), so it
  // often shows up first as their failure: let the signal be seen before saying what happened.
  setTimeout(() => {
    if (interrupted) console.error(`start-up interrupted by ${interrupted}`);
    else console.error(err);
    // The 'exit' listener stops the local servers.
    if (interrupted) exitOnSignal(interrupted);
    else process.exit(1);
  }, 200);
});
