// Configuration is environment variables only, validated once at start-up. Every setting is in
// the README table; an invalid value stops the process with a message naming the variable.
import { readFileSync } from 'node:fs';
import {
  ALLOW_ENV,
  EMBEDDED_ALLOW,
  allowlistOf,
  parseHostAllowlist,
  type HostAllowlist,
} from './modules/adapters/host-allowlist.ts';
import { readSigningSecrets, type SigningSecrets } from './modules/adapters/signing-secrets.ts';
import { parseMasterKey } from './modules/snapshots/crypto.ts';
import { parsePurgeCron } from './modules/purges/cron.ts';
import { NOT_A_TOKEN_CHAR } from './lib/text.ts';
import { DEFAULT_WEBHOOK_SETTINGS, type WebhookSettings } from './modules/webhooks/settings.ts';

export interface Config {
  /** Unset: `npm start` runs a project-owned local PostgreSQL (embedded mode). */
  databaseUrl: string | undefined;
  /** Unset: `npm start` runs a project-owned local Redis (embedded mode). */
  redisUrl: string | undefined;
  host: string;
  port: number;
  logLevel: string;
  adminToken: string | undefined;
  /** Run the execution workers inside the API process (the zero-config start does). */
  workersInProcess: boolean;
  workerConcurrency: number;
  /**
   * CPU priority (nice) a separate worker process gives itself: on a host it shares with the API,
   * operators' reads and commands are served before chunk work; alone on a host it changes nothing.
   */
  workerNice: number;
  /** How soon a job whose worker died is taken over by another (BullMQ lock duration). */
  workerLockMs: number;
  dataDir: string;
  /** Port of the project-owned PostgreSQL in embedded mode; 0 picks a free port. */
  embeddedPgPort: number;
  /** Port of the project-owned Redis in embedded mode; 0 picks a free port. */
  embeddedRedisPort: number;
  /**
   * How long a shutdown (Ctrl-C, SIGTERM) waits for in-flight requests and jobs before the process
   * exits anyway. Embedded mode stops its local PostgreSQL and Redis in either case.
   */
  shutdownTimeoutMs: number;
  queuePrefix: string;
  /**
   * HMAC secrets for calls to downstream systems: BLASTGATE_SECRET_<NAME>[_FILE] by name, and the
   * default BLASTGATE_SIGNING_SECRET[_FILE] (embedded mode generates one when unset). Serialises as
   * names only.
   */
  signingSecrets: SigningSecrets;
  /** Hosts http adapters may call (BLASTGATE_DOWNSTREAM_ALLOW; embedded mode: this machine). */
  downstreamAllow: HostAllowlist;
  /** Bearer token that /metrics on the API port requires; unset: not served there. */
  metricsToken: string | undefined;
  /** The API's metrics on a listener of their own (on metricsHost); unset: none. */
  metricsPort: number | undefined;
  metricsHost: string;
  /** `npm run worker` only: that worker's metrics on this port (on metricsHost). */
  workerMetricsPort: number | undefined;
  /** Timeouts, connection budgets, rate limits and load shedding of the API. */
  limits: Limits;
  /**
   * Master key of the snapshot store (32 bytes): it wraps every resource's snapshot key. Required
   * with DATABASE_URL; unset only when PostgreSQL is embedded, which keeps a generated one with
   * its data (server.ts).
   */
  snapshotKey: Buffer | undefined;
  /** When the workers propose a purge of what is due (BLASTGATE_PURGE_PROPOSAL_CRON, UTC); null: off. */
  purgeProposalCron: string | null;
  /** Webhook deliveries by the workers: retries, backoff, request deadline, dispatch interval. */
  webhooks: WebhookSettings;
}

/**
 * What keeps the API answering under load: how long a request may take, which connection budget
 * each kind of work has, how often one token may call, and when to shed load. Every field has an
 * environment variable (see the README's configuration table).
 */
export interface Limits {
  /** Receiving a whole request (headers and body); a client that trickles gets 408 after this. */
  requestTimeoutMs: number;
  /** A whole request, from arrival to answer; must be longer than requestTimeoutMs. */
  handlerTimeoutMs: number;
  /**
   * Each statement a read (GET, HEAD, a token lookup) runs, and each connection it opens, must be
   * answered within this: 503 DEPENDENCY_UNAVAILABLE otherwise, and the connection is dropped.
   */
  dbReadTimeoutMs: number;
  /** Main pool: reads, plans, registry writes. */
  dbPoolMax: number;
  /** Control pool: authentication and operator commands only, so nothing else can take it. */
  dbControlPoolMax: number;
  /** Uploads pool: writing streamed IDs to their staging table, a batch at a time. */
  dbUploadPoolMax: number;
  /** Requests per token (per IP without one) per window, operator commands aside. */
  rateLimitMax: number;
  /** Operator commands (pause, resume, abort, rollback, signals, freeze) per token per window. */
  rateLimitControlMax: number;
  rateLimitWindowMs: number;
  /** Shed load (503) when the mean event-loop delay passes this; 0 turns the check off. */
  maxEventLoopDelayMs: number;
  /** Shed load (503) when event-loop utilisation passes this (0–1); 0 turns the check off. */
  maxEventLoopUtilization: number;
  /** Open event streams (GET /v1/operations/{id}/events) per token, across all API replicas. */
  sseMaxPerToken: number;
  /** A comment line on an idle event stream this often, so proxies do not cut it. */
  sseHeartbeatMs: number;
}

export const DEFAULT_LIMITS: Limits = {
  requestTimeoutMs: 120_000,
  handlerTimeoutMs: 300_000,
  // As long as an operator command waits for a control connection: a status poll during an outage
  // is answered as soon as a command would be.
  dbReadTimeoutMs: 10_000,
  dbPoolMax: 20,
  dbControlPoolMax: 4,
  dbUploadPoolMax: 4,
  rateLimitMax: 600,
  rateLimitControlMax: 300,
  rateLimitWindowMs: 60_000,
  // Half a second of mean delay: every new request already waits that long before it is read.
  maxEventLoopDelayMs: 500,
  // Off: one large upload keeps the loop busy for seconds while requests still answer in
  // milliseconds; busy is not stalled.
  maxEventLoopUtilization: 0,
  sseMaxPerToken: 10,
  sseHeartbeatMs: 15_000,
};

/** A service URL as messages show it: never its password. */
export function shownUrl(url: string): string {
  const u = new URL(url);
  u.password = '';
  return u.href.replace(/\/$/, '');
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** REDIS_URL's path selects a database by number; anything else fails only once connected. */
function redisUrl(v: string | undefined, problems: string[]): string | undefined {
  // Without "//" after the scheme it is not a URL of a server: already said.
  if (v === undefined || !/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) return v;
  try {
    const path = new URL(v).pathname;
    if (path !== '' && path !== '/' && !/^\/\d{1,5}$/.test(path))
      problems.push(`REDIS_URL must name a Redis database by number (redis://host:port/0), not "${path}"`);
  } catch {
    // Not a URL: already said.
  }
  return v;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
/** The accepted forms of a snapshot key, as config errors state them. */
export const SNAPSHOT_KEY_FORMS =
  '32 bytes written as 64 hex characters or as base64 (44 characters, e.g. from `openssl rand -base64 32`)';

/**
 * The snapshot master key from BLASTGATE_SNAPSHOT_KEY or the file BLASTGATE_SNAPSHOT_KEY_FILE
 * names. A key is a secret: problems say its length, never its value.
 */
function snapshotKeyFrom(inline: string | undefined, file: string | undefined, problems: string[]) {
  if (inline !== undefined && file !== undefined) {
    problems.push('BLASTGATE_SNAPSHOT_KEY and BLASTGATE_SNAPSHOT_KEY_FILE are both set: set one of them');
    return undefined;
  }
  let text = inline;
  const name = file === undefined ? 'BLASTGATE_SNAPSHOT_KEY' : `BLASTGATE_SNAPSHOT_KEY_FILE (${file})`;
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      problems.push(`BLASTGATE_SNAPSHOT_KEY_FILE cannot be read (${file}: ${code})`);
      return undefined;
    }
  }
  if (text === undefined) return undefined;
  const key = parseMasterKey(text);
  if (!key) {
    problems.push(`${name} must be ${SNAPSHOT_KEY_FORMS} (got ${text.trim().length} characters; a key is never shown)`);
    return undefined;
  }
  // Like the signing secrets, a serialised config (a log line, an error) never carries the key.
  Object.defineProperty(key, 'toJSON', { value: () => '[snapshot key]' });
  return key;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: string[] = [];
  const str = (name: string) => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const url = (name: string, protocols: string[]) => {
    const v = str(name);
    if (v === undefined) return undefined;
    try {
      const u = new URL(v);
      if (!protocols.includes(u.protocol))
        problems.push(`${name} must use ${protocols.join(' or ')} (got ${u.protocol})`);
      // `postgres:/db:5432/x` parses too, without a host: the driver would then try localhost and
      // report it unreachable, far from the typo. `postgres:///x?host=/socket/dir` keeps its "//".
      else if (!v.slice(u.protocol.length).startsWith('//')) throw new Error('no "//" after the scheme');
    } catch {
      // Not the value: a URL may carry a password. The shape it needs is what an operator lacks
      // (a trial's `redis//127.0.0.1:6379` lost its colon).
      problems.push(`${name} is not a valid URL: expected ${protocols[0]}//host:port/… (is "://" complete?)`);
    }
    return v;
  };
  const databaseUrl = (v: string | undefined) => {
    const problem = v === undefined ? null : databaseNameProblem(v);
    if (problem) problems.push(problem);
    return v;
  };
  const int = (name: string, dflt: number, min: number, max: number) => {
    const v = str(name);
    if (v === undefined) return dflt;
    // Plain decimal digits only: Number() would also take "1e3", "0x10", "4.0" and " 3000".
    const n = /^-?\d+$/.test(v) ? Number(v) : NaN;
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer from ${min} to ${max} (got "${v}")`);
      return dflt;
    }
    return n;
  };
  const fraction = (name: string, dflt: number) => {
    const v = str(name);
    if (v === undefined) return dflt;
    const n = /^(\d+(\.\d*)?|\.\d+)$/.test(v) ? Number(v) : NaN;
    if (!Number.isFinite(n) || n < 0 || n > 1) {
      problems.push(`${name} must be a number from 0 to 1 (got "${v}")`);
      return dflt;
    }
    return n;
  };
  const bool = (name: string, dflt: boolean) => {
    const v = str(name);
    if (v === undefined) return dflt;
    if (['1', 'true', 'yes'].includes(v.toLowerCase())) return true;
    if (['0', 'false', 'no'].includes(v.toLowerCase())) return false;
    problems.push(`${name} must be true or false (also 1/0, yes/no) (got "${v}")`);
    return dflt;
  };

  const logLevel = str('LOG_LEVEL') ?? 'info';
  if (!LOG_LEVELS.includes(logLevel))
    problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  const adminToken = str('BLASTGATE_ADMIN_TOKEN');
  if (adminToken !== undefined && adminToken.length < 24) {
    problems.push('BLASTGATE_ADMIN_TOKEN must be at least 24 characters (it is the bootstrap admin credential)');
  }
  // The API reads a bearer token as one word (auth/plugin.ts), and the CLI refuses any other: an
  // admin token with a space or a line break in it would be a credential nobody can present.
  if (adminToken !== undefined && NOT_A_TOKEN_CHAR.test(adminToken))
    problems.push(
      'BLASTGATE_ADMIN_TOKEN must be one word of visible ASCII characters (no space, line break or other character): a token is sent as "Authorization: Bearer <token>"',
    );
  const secrets = readSigningSecrets(env);
  problems.push(...secrets.problems);
  const allowText = env[ALLOW_ENV];
  const allow = allowText === undefined ? undefined : parseHostAllowlist(allowText);
  problems.push(...(allow?.problems ?? []));
  const metricsToken = str('BLASTGATE_METRICS_TOKEN');
  if (metricsToken !== undefined && metricsToken.length < 24)
    problems.push(`BLASTGATE_METRICS_TOKEN must be at least 24 characters (got ${metricsToken.length})`);
  const optionalPort = (name: string) => (str(name) === undefined ? undefined : int(name, 0, 1, 65535));
  const host = str('HOST') ?? '127.0.0.1';
  const snapshotKey = snapshotKeyFrom(str('BLASTGATE_SNAPSHOT_KEY'), str('BLASTGATE_SNAPSHOT_KEY_FILE'), problems);
  const purgeCron = parsePurgeCron(str('BLASTGATE_PURGE_PROPOSAL_CRON'));
  if ('problem' in purgeCron) problems.push(purgeCron.problem);
  const config: Config = {
    databaseUrl: databaseUrl(url('DATABASE_URL', ['postgres:', 'postgresql:'])),
    redisUrl: redisUrl(url('REDIS_URL', ['redis:', 'rediss:']), problems),
    host,
    port: int('PORT', 3000, 0, 65535),
    logLevel,
    adminToken,
    workersInProcess: bool('BLASTGATE_WORKERS_IN_PROCESS', true),
    workerConcurrency: int('BLASTGATE_WORKER_CONCURRENCY', 4, 1, 256),
    workerNice: int('BLASTGATE_WORKER_NICE', 10, 0, 19),
    workerLockMs: int('BLASTGATE_WORKER_LOCK_MS', 30_000, 1_000, 600_000),
    dataDir: str('BLASTGATE_DATA_DIR') ?? '.data',
    embeddedPgPort: int('BLASTGATE_EMBEDDED_PG_PORT', 54329, 0, 65535),
    embeddedRedisPort: int('BLASTGATE_EMBEDDED_REDIS_PORT', 63799, 0, 65535),
    shutdownTimeoutMs: int('BLASTGATE_SHUTDOWN_TIMEOUT_MS', 15_000, 1_000, 600_000),
    queuePrefix: str('BLASTGATE_QUEUE_PREFIX') ?? 'blastgate',
    signingSecrets: secrets.secrets,
    // Set (even empty): exactly that list. Unset: embedded mode may call this machine only; with
    // DATABASE_URL and REDIS_URL set, no host (every http adapter is refused until it is set).
    downstreamAllow: allow?.allow ?? allowlistOf(!str('DATABASE_URL') || !str('REDIS_URL') ? EMBEDDED_ALLOW : []),
    metricsToken,
    metricsPort: optionalPort('BLASTGATE_METRICS_PORT'),
    metricsHost: str('BLASTGATE_METRICS_HOST') ?? host,
    workerMetricsPort: optionalPort('BLASTGATE_WORKER_METRICS_PORT'),
    limits: loadLimits(int, fraction),
    snapshotKey,
    purgeProposalCron: 'cron' in purgeCron ? purgeCron.cron : null,
    webhooks: {
      attempts: int('BLASTGATE_WEBHOOK_ATTEMPTS', DEFAULT_WEBHOOK_SETTINGS.attempts, 1, 25),
      backoffMs: int('BLASTGATE_WEBHOOK_BACKOFF_MS', DEFAULT_WEBHOOK_SETTINGS.backoffMs, 10, 3_600_000),
      backoffMaxMs: int('BLASTGATE_WEBHOOK_BACKOFF_MAX_MS', DEFAULT_WEBHOOK_SETTINGS.backoffMaxMs, 10, 86_400_000),
      timeoutMs: int('BLASTGATE_WEBHOOK_TIMEOUT_MS', DEFAULT_WEBHOOK_SETTINGS.timeoutMs, 100, 120_000),
      pollMs: int('BLASTGATE_WEBHOOK_POLL_MS', DEFAULT_WEBHOOK_SETTINGS.pollMs, 50, 60_000),
      concurrency: int('BLASTGATE_WEBHOOK_CONCURRENCY', DEFAULT_WEBHOOK_SETTINGS.concurrency, 1, 64),
    },
  };
  if (config.limits.handlerTimeoutMs <= config.limits.requestTimeoutMs) {
    problems.push(
      `BLASTGATE_HANDLER_TIMEOUT_MS (${config.limits.handlerTimeoutMs}) must be longer than BLASTGATE_REQUEST_TIMEOUT_MS (${config.limits.requestTimeoutMs}): a request is answered after it was received`,
    );
  }
  // Snapshots in a database Blastgate does not own must stay readable by every process and every
  // restart, so the key comes from the operator's secret store; a generated one would be lost with
  // the host (and each replica would make its own). Only an embedded PostgreSQL keeps one with it.
  const keyProblem = problems.some((p) => p.startsWith('BLASTGATE_SNAPSHOT_KEY'));
  if (config.databaseUrl && !snapshotKey && !keyProblem)
    problems.push(
      `BLASTGATE_SNAPSHOT_KEY (or BLASTGATE_SNAPSHOT_KEY_FILE) must be set when DATABASE_URL is set: every snapshot is encrypted under it, and a restore needs the same key. It is ${SNAPSHOT_KEY_FORMS}; keep it in your secret store (only embedded mode generates one, in its data folder)`,
    );
  // Embedded mode listens on all three ports at once (a port of 0 is chosen free at start-up).
  const embedded = !config.databaseUrl || !config.redisUrl;
  const ports: [string, number][] = !embedded
    ? []
    : [
        ['PORT', config.port],
        ['BLASTGATE_EMBEDDED_PG_PORT', config.embeddedPgPort],
        ['BLASTGATE_EMBEDDED_REDIS_PORT', config.embeddedRedisPort],
      ];
  for (const [i, [name, port]] of ports.entries()) {
    const clash = ports.slice(i + 1).find(([, other]) => port !== 0 && other === port);
    if (clash) problems.push(`${name} and ${clash[0]} must be different ports (both are ${port})`);
  }
  if (config.metricsPort !== undefined && config.metricsPort === config.port)
    problems.push(`BLASTGATE_METRICS_PORT and PORT must be different ports (both are ${config.port})`);
  if (problems.length) throw new ConfigError(problems);
  return config;
}

function loadLimits(
  int: (name: string, dflt: number, min: number, max: number) => number,
  fraction: (name: string, dflt: number) => number,
): Limits {
  const d = DEFAULT_LIMITS;
  return {
    requestTimeoutMs: int('BLASTGATE_REQUEST_TIMEOUT_MS', d.requestTimeoutMs, 1_000, 3_600_000),
    handlerTimeoutMs: int('BLASTGATE_HANDLER_TIMEOUT_MS', d.handlerTimeoutMs, 2_000, 7_200_000),
    dbReadTimeoutMs: int('BLASTGATE_DB_READ_TIMEOUT_MS', d.dbReadTimeoutMs, 100, 600_000),
    dbPoolMax: int('BLASTGATE_DB_POOL_MAX', d.dbPoolMax, 2, 1_000),
    dbControlPoolMax: int('BLASTGATE_DB_CONTROL_POOL_MAX', d.dbControlPoolMax, 1, 100),
    dbUploadPoolMax: int('BLASTGATE_DB_UPLOAD_POOL_MAX', d.dbUploadPoolMax, 1, 100),
    rateLimitMax: int('BLASTGATE_RATE_LIMIT_MAX', d.rateLimitMax, 1, 1_000_000),
    rateLimitControlMax: int('BLASTGATE_RATE_LIMIT_CONTROL_MAX', d.rateLimitControlMax, 1, 1_000_000),
    rateLimitWindowMs: int('BLASTGATE_RATE_LIMIT_WINDOW_MS', d.rateLimitWindowMs, 1_000, 86_400_000),
    maxEventLoopDelayMs: int('BLASTGATE_MAX_EVENT_LOOP_DELAY_MS', d.maxEventLoopDelayMs, 0, 60_000),
    maxEventLoopUtilization: fraction('BLASTGATE_MAX_EVENT_LOOP_UTILIZATION', d.maxEventLoopUtilization),
    sseMaxPerToken: int('BLASTGATE_SSE_MAX_PER_TOKEN', d.sseMaxPerToken, 1, 10_000),
    sseHeartbeatMs: int('BLASTGATE_SSE_HEARTBEAT_MS', d.sseHeartbeatMs, 100, 300_000),
  };
}

/**
 * A PostgreSQL URL that names no database connects to the user's default one (often `postgres`):
 * a start applied every migration there before it refused for another reason, and `npm run
 * db:migrate` did so without refusing at all (two trials): Blastgate's schema in a database that
 * is not its own. Null when the URL names one, or is not a PostgreSQL URL (said elsewhere).
 */
export function databaseNameProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (!/^postgres(ql)?:$/.test(u.protocol) || (u.pathname !== '' && u.pathname !== '/')) return null;
  return "DATABASE_URL names no database: add its name after the host (postgres://user@host:5432/blastgate); without one PostgreSQL would use the user's default database";
}
