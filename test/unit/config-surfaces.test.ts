// The configuration of downstream calls and surfaces: validated at start-up, naming the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { hostProblem } from '../../src/modules/adapters/host-allowlist.ts';
import { TEST_SNAPSHOT_KEY } from '../support/keys.ts';

const problems = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};
// Outside embedded mode the snapshot key is required (see config.test.ts); it is beside the point here.
const external = {
  DATABASE_URL: 'postgres://db/x',
  REDIS_URL: 'redis://r:6379',
  BLASTGATE_SNAPSHOT_KEY: TEST_SNAPSHOT_KEY,
};
const SECRET = 'x'.repeat(40);

describe('BLASTGATE_DOWNSTREAM_ALLOW', () => {
  it('defaults to this machine in embedded mode and to no host at all otherwise', () => {
    expect(loadConfig({}).downstreamAllow.entries).toEqual(['127.0.0.1', '::1', 'localhost']);
    expect(loadConfig(external).downstreamAllow.entries).toEqual([]);
    expect(hostProblem(loadConfig(external).downstreamAllow, 'apps.internal')).toMatch(/not in/);
  });

  it('replaces the default when set (also to nothing), and refuses bad entries naming them', () => {
    const c = loadConfig({ ...external, BLASTGATE_DOWNSTREAM_ALLOW: '*.internal, 10.0.0.0/8' });
    expect(c.downstreamAllow.entries).toEqual(['*.internal', '10.0.0.0/8']);
    expect(loadConfig({ BLASTGATE_DOWNSTREAM_ALLOW: '' }).downstreamAllow.entries).toEqual([]);
    expect(problems({ BLASTGATE_DOWNSTREAM_ALLOW: 'apps.internal:443' })).toEqual([
      expect.stringMatching(/^BLASTGATE_DOWNSTREAM_ALLOW entry "apps.internal:443" is not a host name/),
    ]);
  });
});

describe('signing secrets', () => {
  it('reads named secrets and the default; serialises as names only', () => {
    const c = loadConfig({ BLASTGATE_SECRET_APPS_PROD: SECRET, BLASTGATE_SIGNING_SECRET: SECRET });
    expect(c.signingSecrets.resolve('apps-prod')).toEqual({ ok: true, secret: SECRET });
    expect(JSON.stringify(c)).not.toContain(SECRET);
  });

  it('serialises the snapshot key as a placeholder, never its bytes', () => {
    const c = loadConfig(external);
    expect(c.snapshotKey?.toString('base64')).toBe(TEST_SNAPSHOT_KEY);
    expect(JSON.stringify(c)).toContain('"snapshotKey":"[snapshot key]"');
    expect(JSON.stringify(c)).not.toContain('Buffer');
  });

  it('stops the start-up on a short or unreadable secret, naming the variable', () => {
    expect(
      problems({ BLASTGATE_SIGNING_SECRET: 'short', BLASTGATE_SECRET_BILLING_FILE: '/nonexistent/billing' }),
    ).toEqual([
      'BLASTGATE_SECRET_BILLING_FILE: cannot read /nonexistent/billing (ENOENT)',
      'BLASTGATE_SIGNING_SECRET must hold at least 32 characters (got 5)',
    ]);
  });
});

describe('metrics', () => {
  it('are off by default: no token, no port of their own; the listener binds HOST unless told otherwise', () => {
    expect(loadConfig({ HOST: '0.0.0.0' })).toMatchObject({
      metricsToken: undefined,
      metricsPort: undefined,
      metricsHost: '0.0.0.0',
      workerMetricsPort: undefined,
    });
    expect(
      loadConfig({
        BLASTGATE_METRICS_TOKEN: 'm'.repeat(24),
        BLASTGATE_METRICS_PORT: '9464',
        BLASTGATE_METRICS_HOST: '10.0.0.5',
        BLASTGATE_WORKER_METRICS_PORT: '9465',
      }),
    ).toMatchObject({ metricsPort: 9464, metricsHost: '10.0.0.5', workerMetricsPort: 9465 });
  });

  it('refuses a short token, a bad port and the API port', () => {
    expect(
      problems({
        ...external,
        BLASTGATE_METRICS_TOKEN: 'short',
        BLASTGATE_WORKER_METRICS_PORT: 'x',
      }),
    ).toEqual([
      'BLASTGATE_METRICS_TOKEN must be at least 24 characters (got 5)',
      'BLASTGATE_WORKER_METRICS_PORT must be an integer from 1 to 65535 (got "x")',
    ]);
    expect(problems({ ...external, BLASTGATE_ADMIN_TOKEN: `${'a'.repeat(24)} b` })).toEqual([
      'BLASTGATE_ADMIN_TOKEN must be one word of visible ASCII characters (no space, line break or other character): a token is sent as "Authorization: Bearer <token>"',
    ]);
    expect(problems({ ...external, PORT: '9000', BLASTGATE_METRICS_PORT: '9000' })).toEqual([
      'BLASTGATE_METRICS_PORT and PORT must be different ports (both are 9000)',
    ]);
  });
});

describe('DATABASE_URL', () => {
  it('must name a database: without one the start migrated the default database (postgres) first', () => {
    for (const url of ['postgres://postgres@127.0.0.1:54488', 'postgresql://u:p@db:5432/'])
      expect(problems({ ...external, DATABASE_URL: url })).toEqual([
        expect.stringMatching(/^DATABASE_URL names no database: add its name after the host/),
      ]);
    // The password is never quoted back.
    expect(problems({ ...external, DATABASE_URL: 'postgres://u:s3cret@db:5432' }).join(' ')).not.toContain('s3cret');
    for (const url of ['postgres://db/x', 'postgres:///blastgate?host=/var/run/postgresql'])
      expect(problems({ ...external, DATABASE_URL: url })).toEqual([]);
  });
});
