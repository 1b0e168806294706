// Whether an error means "a dependency is away for now" (PostgreSQL or Redis restarting, a dropped
// connection) rather than "this piece of work is broken". Work that failed for a transient reason
// is retried when the dependency is back; only the other kind may be quarantined.

// Node socket errors, and PostgreSQL's connection-exception and operator-intervention classes.
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down)
  '08000',
  '08001',
  '08003',
  '08004',
  '08006',
  '53300', // too_many_connections
  '40001', // serialization_failure
  '40P01', // deadlock_detected
]);

const TRANSIENT_MESSAGES = [
  /Connection terminated/i,
  /Client has encountered a connection error/i,
  /connect ECONNREFUSED/i,
  /Connection is closed/i, // ioredis
  /Reached the max retries per request limit/i, // ioredis
  /timeout exceeded when trying to connect/i, // pg pool
];

export function isTransient(err: unknown): boolean {
  for (
    let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined, depth = 0;
    e && depth < 5;
    depth++
  ) {
    if (typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
    if (typeof e.message === 'string' && TRANSIENT_MESSAGES.some((re) => re.test(e!.message as string))) return true;
    e = e.cause as typeof e;
  }
  return false;
}
