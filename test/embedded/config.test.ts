// The embedded-mode settings are validated with the rest of the configuration, naming the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';

const problems = (env: Record<string, string>) => {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
};

describe('embedded-mode configuration', () => {
  it('defaults: PostgreSQL on 54329, Redis on 63799, 15 s to shut down', () => {
    expect(loadConfig({})).toMatchObject({
      embeddedPgPort: 54329,
      embeddedRedisPort: 63799,
      shutdownTimeoutMs: 15_000,
    });
  });

  it('accepts 0 (a free port) and explicit ports', () => {
    expect(loadConfig({ BLASTGATE_EMBEDDED_PG_PORT: '0', BLASTGATE_EMBEDDED_REDIS_PORT: '0' })).toMatchObject({
      embeddedPgPort: 0,
      embeddedRedisPort: 0,
    });
    expect(loadConfig({ BLASTGATE_EMBEDDED_PG_PORT: '5544', BLASTGATE_SHUTDOWN_TIMEOUT_MS: '2000' })).toMatchObject({
      embeddedPgPort: 5544,
      shutdownTimeoutMs: 2000,
    });
  });

  it('rejects invalid values with the variable named', () => {
    expect(
      problems({
        BLASTGATE_EMBEDDED_PG_PORT: 'abc',
        BLASTGATE_EMBEDDED_REDIS_PORT: '70000',
        BLASTGATE_SHUTDOWN_TIMEOUT_MS: '10',
      }),
    ).toEqual([
      'BLASTGATE_EMBEDDED_PG_PORT must be an integer from 0 to 65535 (got "abc")',
      'BLASTGATE_EMBEDDED_REDIS_PORT must be an integer from 0 to 65535 (got "70000")',
      'BLASTGATE_SHUTDOWN_TIMEOUT_MS must be an integer from 1000 to 600000 (got "10")',
    ]);
  });

  it('rejects two embedded-mode listeners on one port, and only in embedded mode', () => {
    expect(problems({ BLASTGATE_EMBEDDED_PG_PORT: '7000', BLASTGATE_EMBEDDED_REDIS_PORT: '7000' })).toEqual([
      'BLASTGATE_EMBEDDED_PG_PORT and BLASTGATE_EMBEDDED_REDIS_PORT must be different ports (both are 7000)',
    ]);
    expect(problems({ PORT: '54329' })).toEqual([
      'PORT and BLASTGATE_EMBEDDED_PG_PORT must be different ports (both are 54329)',
    ]);
    const external = { DATABASE_URL: 'postgres://db/x', REDIS_URL: 'redis://r:6379' };
    expect(problems({ ...external, PORT: '54329' })).toEqual([]);
  });
});
