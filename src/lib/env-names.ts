// Every environment variable Blastgate reads under its own prefix. A name that is not one of them
// (BLASTGATE_WORKER_CONCURENCY) used to be ignored without a word, so a typo in a deployment
// silently kept the default; the API and the worker now warn about it at start, naming the
// closest real one. The list is checked against the source by a test (env-names.test.ts).
export const KNOWN_SETTINGS = [
  'BLASTGATE_ADMIN_TOKEN',
  'BLASTGATE_DATA_DIR',
  'BLASTGATE_DB_CONTROL_POOL_MAX',
  'BLASTGATE_DB_POOL_MAX',
  'BLASTGATE_DB_READ_TIMEOUT_MS',
  'BLASTGATE_DB_UPLOAD_POOL_MAX',
  'BLASTGATE_DEBUG_RSS',
  'BLASTGATE_DOWNSTREAM_ALLOW',
  'BLASTGATE_EMBEDDED_PG_PORT',
  'BLASTGATE_EMBEDDED_REDIS_PORT',
  'BLASTGATE_HANDLER_TIMEOUT_MS',
  'BLASTGATE_MAX_EVENT_LOOP_DELAY_MS',
  'BLASTGATE_MAX_EVENT_LOOP_UTILIZATION',
  'BLASTGATE_METRICS_HOST',
  'BLASTGATE_METRICS_PORT',
  'BLASTGATE_METRICS_TOKEN',
  'BLASTGATE_PURGE_PROPOSAL_CRON',
  'BLASTGATE_QUEUE_PREFIX',
  'BLASTGATE_RATE_LIMIT_CONTROL_MAX',
  'BLASTGATE_RATE_LIMIT_MAX',
  'BLASTGATE_RATE_LIMIT_WINDOW_MS',
  'BLASTGATE_REDIS_URL',
  'BLASTGATE_REQUEST_TIMEOUT_MS',
  'BLASTGATE_SHUTDOWN_TIMEOUT_MS',
  'BLASTGATE_SIGNING_SECRET',
  'BLASTGATE_SIGNING_SECRET_FILE',
  'BLASTGATE_SNAPSHOT_KEY',
  'BLASTGATE_SNAPSHOT_KEY_FILE',
  'BLASTGATE_SSE_HEARTBEAT_MS',
  'BLASTGATE_SSE_MAX_PER_TOKEN',
  'BLASTGATE_TOKEN',
  'BLASTGATE_TOKEN_FILE',
  'BLASTGATE_URL',
  'BLASTGATE_WEBHOOK_ATTEMPTS',
  'BLASTGATE_WEBHOOK_BACKOFF_MS',
  'BLASTGATE_WEBHOOK_BACKOFF_MAX_MS',
  'BLASTGATE_WEBHOOK_CONCURRENCY',
  'BLASTGATE_WEBHOOK_POLL_MS',
  'BLASTGATE_WEBHOOK_TIMEOUT_MS',
  'BLASTGATE_WORKERS_IN_PROCESS',
  'BLASTGATE_WORKER_CONCURRENCY',
  'BLASTGATE_WORKER_LOCK_MS',
  'BLASTGATE_WORKER_METRICS_PORT',
  'BLASTGATE_WORKER_NICE',
  // Read by scripts/ci-intake-example.mjs and by the test suite, which may share the environment.
  'BLASTGATE_INTAKE_TIMEOUT_MS',
  'BLASTGATE_CHROMIUM',
  'BLASTGATE_TEST_NODE_BINS',
] as const;

/** Families of names: a named signing secret, BLASTGATE_SECRET_<NAME>[_FILE]. */
export const KNOWN_PREFIXES = ['BLASTGATE_SECRET_'] as const;

/**
 * The settings without our prefix whose misspelling changes what starts: a start without
 * DATABASE_URL runs a local PostgreSQL of its own (DATABSE_URL made an empty installation beside
 * a shared Redis, a new-user trial). Names this close to one of them are warned about.
 */
export const CONNECTION_SETTINGS = ['DATABASE_URL', 'REDIS_URL'] as const;

/**
 * The other settings without our prefix. Short names, so only a one-letter typo is named: a
 * trial's PORTT=8080 started on port 3000 without a word; HOME is two letters from HOST.
 */
export const SHORT_SETTINGS = ['PORT', 'HOST', 'LOG_LEVEL'] as const;

/**
 * One warning per BLASTGATE_ variable that is none of the above, with the closest real name, and
 * one per variable that looks like a misspelt DATABASE_URL or REDIS_URL.
 */
export function unknownSettings(env: NodeJS.ProcessEnv): string[] {
  const known = new Set<string>(KNOWN_SETTINGS);
  const ours = Object.keys(env)
    .filter((k) => k.startsWith('BLASTGATE_') && !known.has(k) && !KNOWN_PREFIXES.some((p) => k.startsWith(p)))
    .sort()
    .map((k) => notASetting(k, closest(k, KNOWN_SETTINGS)));
  const near = [...misspeltConnections(env), ...misspeltShortSettings(env)];
  return [...ours, ...near.map(([k, meant]) => `warning: ${k} is ignored (did you mean ${meant}?)`)];
}

/** The warning for a BLASTGATE_ variable that is not a setting, with the name it likely meant. */
export function notASetting(name: string, near: string | undefined): string {
  return `warning: ${name} is not a Blastgate setting and is ignored${near ? ` (did you mean ${near}?)` : ''}`;
}

/**
 * For a client that reads only some of the settings (the CLI): BLASTGATE_ variables set that are no
 * setting at all and a typo or few from one of `among`, with the name meant. A setting of the
 * server's (a shared CI environment) is not one: it is not the client's to judge. The CLI used to
 * ignore BLASTGATE_QUEUE_PREFX without a word and submit to the default queue.
 */
export function misspeltAmong(env: NodeJS.ProcessEnv, among: readonly string[]): [string, string][] {
  const known = new Set<string>(KNOWN_SETTINGS);
  return Object.keys(env)
    .filter((k) => k.startsWith('BLASTGATE_') && !known.has(k) && !KNOWN_PREFIXES.some((p) => k.startsWith(p)))
    .sort()
    .flatMap((k): [string, string][] => {
      const near = closest(k, among);
      return near ? [[k, near]] : [];
    });
}

/** Variables set that are a typo or two away from DATABASE_URL / REDIS_URL, with the name meant. */
export function misspeltConnections(env: NodeJS.ProcessEnv): [string, string][] {
  const exact = new Set<string>(CONNECTION_SETTINGS);
  return Object.keys(env)
    .filter((k) => !exact.has(k) && !k.startsWith('BLASTGATE_'))
    .sort()
    .flatMap((k): [string, string][] => {
      const near = closest(k.toUpperCase(), CONNECTION_SETTINGS, 3);
      return near ? [[k, near]] : [];
    });
}

/** Variables set that are one letter away from PORT, HOST or LOG_LEVEL, with the name meant. */
export function misspeltShortSettings(env: NodeJS.ProcessEnv): [string, string][] {
  const exact = new Set<string>(SHORT_SETTINGS);
  return Object.keys(env)
    .filter((k) => !exact.has(k) && !k.startsWith('BLASTGATE_'))
    .sort()
    .flatMap((k): [string, string][] => {
      const near = closest(k, SHORT_SETTINGS, 2);
      return near ? [[k, near]] : [];
    });
}

function closest(name: string, among: readonly string[], within = 4): string | undefined {
  let best: string | undefined;
  let bestDistance = within; // a few typos at most; anything further is not a suggestion
  for (const k of among) {
    const d = distance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

/** Levenshtein distance (short names: the plain two-row table). */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++)
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}
