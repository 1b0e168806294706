// Builds a real app (real Postgres database of its own, real Redis) plus a token for every role.
import { inject } from 'vitest';
import { buildApp } from '../../src/app.ts';
import type { DownstreamPolicy } from '../../src/modules/adapters/index.ts';
import type { Limits } from '../../src/config.ts';
import type { Role } from '../../src/modules/auth/roles.ts';
import { ROLES } from '../../src/modules/auth/roles.ts';
import type { App } from '../../src/lib/schemas.ts';
import { createTestDatabase } from './db.ts';
import { METRICS_TOKEN, testDownstream } from './secrets.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from './keys.ts';

export { APPS_PROD_SECRET, METRICS_TOKEN, SECRET, testDownstream } from './secrets.ts';

export interface TestApp {
  app: App;
  databaseUrl: string;
  redisUrl: string;
  tokens: Record<Role, string>;
  /** `Authorization` header value for a role. */
  auth(role: Role): string;
  close(): Promise<void>;
}

// Tests send far more requests per token than a real client would (the hostile-input suite sends
// thousands), and share a small machine with PostgreSQL, Redis, workers and other test files, whose
// load is not the app's: they run with rate budgets that never bind and without load shedding.
// The rate-limit and load-shedding tests (and the halt-under-load test) turn them back on.
export const UNBOUNDED = {
  rateLimitMax: 1_000_000,
  rateLimitControlMax: 1_000_000,
  maxEventLoopDelayMs: 0,
  maxEventLoopUtilization: 0,
};

export async function buildTestApp(
  opts: {
    queuePrefix?: string;
    redisUrl?: string;
    databaseUrl?: string;
    downstream?: DownstreamPolicy;
    metricsToken?: string | null;
    /** Pino options, e.g. a stream to read the logs from. */
    logger?: object;
    limits?: Partial<Limits>;
  } = {},
): Promise<TestApp> {
  // A test that restarts PostgreSQL brings its own server; everyone else clones the template.
  const databaseUrl = opts.databaseUrl ?? (await createTestDatabase());
  // A test that restarts Redis brings its own server; everyone else shares the suite's.
  const redisUrl = opts.redisUrl ?? inject('redisUrl');
  const app = await buildApp({
    config: {
      databaseUrl,
      redisUrl,
      logLevel: 'silent',
      queuePrefix: opts.queuePrefix ?? `bgt_${databaseUrl.split('/').pop()}`,
      ...(opts.metricsToken === null ? {} : { metricsToken: opts.metricsToken ?? METRICS_TOKEN }),
      limits: { ...UNBOUNDED, ...opts.limits },
      snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
    },
    downstream: opts.downstream ?? testDownstream(),
    logger: opts.logger ?? (process.env.TEST_LOG ? { level: process.env.TEST_LOG } : false),
  });
  await app.ready();
  const tokens = {} as Record<Role, string>;
  const admin = 'bg_test_admin_token_000000000000';
  await app.authService.ensureBootstrap(admin);
  tokens.admin = admin;
  for (const role of ROLES) {
    if (role === 'admin') continue;
    // A second app on the same database (opts.databaseUrl) gets tokens of its own, under names
    // of their own: a name in use is refused (TOKEN_NAME_TAKEN).
    const name = opts.databaseUrl ? `test-${role}-${Math.random().toString(36).slice(2, 8)}` : `test-${role}`;
    const created = await app.authService.createToken(name, role, { tokenId: 'test', name: 'test' });
    tokens[role] = created.token;
  }
  // A second requester and approver, for "not your own operation" rules.
  return {
    app,
    databaseUrl,
    redisUrl,
    tokens,
    auth: (role) => `Bearer ${tokens[role]}`,
    close: () => app.close(),
  };
}
