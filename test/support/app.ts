// Builds a real app (real Postgres database of its own, real Redis) plus a token for every role.
import { inject } from 'vitest';
import { buildApp } from '../../src/app.ts';
import type { Role } from '../../src/modules/auth/roles.ts';
import { ROLES } from '../../src/modules/auth/roles.ts';
import type { App } from '../../src/lib/schemas.ts';
import { createTestDatabase } from './db.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from './keys.ts';

export interface TestApp {
  app: App;
  databaseUrl: string;
  redisUrl: string;
  tokens: Record<Role, string>;
  /** `Authorization` header value for a role. */
  auth(role: Role): string;
  close(): Promise<void>;
}

export async function buildTestApp(
  opts: { queuePrefix?: string; redisUrl?: string; databaseUrl?: string } = {},
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
      snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
    },
    logger: process.env.TEST_LOG ? { level: process.env.TEST_LOG } : false,
  });
  await app.ready();
  const tokens = {} as Record<Role, string>;
  const admin = 'bg_test_admin_token_000000000000';
  await app.authService.ensureBootstrap(admin);
  tokens.admin = admin;
  for (const role of ROLES) {
    if (role === 'admin') continue;
    const created = await app.authService.createToken(`test-${role}`, role, {
      tokenId: 'test',
      name: 'test',
      role: 'admin',
    });
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
