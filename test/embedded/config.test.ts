// The embedded-mode settings are validated with the rest of the configuration, naming the variable.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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

  it('says what shape a URL it cannot parse needs, without echoing it (it may hold a password)', () => {
    expect(problems({ REDIS_URL: 'redis//:s3cret@127.0.0.1:6379' })).toEqual([
      'REDIS_URL is not a valid URL: expected redis://host:port/… (is "://" complete?)',
    ]);
    expect(problems({ DATABASE_URL: 'postgres//u:s3cret@db/x', BLASTGATE_SNAPSHOT_KEY: HEX_KEY })).toEqual([
      'DATABASE_URL is not a valid URL: expected postgres://host:port/… (is "://" complete?)',
    ]);
    // One slash parses as a URL without a host: pg would then try localhost:5432 and report it
    // unreachable, far from the typo (a trial's `postgres:/…`).
    expect(problems({ DATABASE_URL: 'postgres:/u:s3cret@db:5432/x', BLASTGATE_SNAPSHOT_KEY: HEX_KEY })).toEqual([
      'DATABASE_URL is not a valid URL: expected postgres://host:port/… (is "://" complete?)',
    ]);
    expect(problems({ REDIS_URL: 'redis:127.0.0.1:6379' })).toEqual([
      'REDIS_URL is not a valid URL: expected redis://host:port/… (is "://" complete?)',
    ]);
    // A socket directory instead of a host is PostgreSQL's own form, and stays accepted.
    expect(
      problems({ DATABASE_URL: 'postgres:///blastgate?host=/var/run/postgresql', BLASTGATE_SNAPSHOT_KEY: HEX_KEY }),
    ).toEqual([]);
  });

  it("rejects a REDIS_URL whose database is not a number (Redis's SELECT would fail after start-up)", () => {
    expect(problems({ REDIS_URL: 'redis://127.0.0.1:6379/abc' })).toEqual([
      'REDIS_URL must name a Redis database by number (redis://host:port/0), not "/abc"',
    ]);
    for (const ok of ['redis://127.0.0.1:6379', 'redis://127.0.0.1:6379/', 'redis://127.0.0.1:6379/3'])
      expect(problems({ REDIS_URL: ok })).toEqual([]);
  });

  it('rejects two embedded-mode listeners on one port, and only in embedded mode', () => {
    expect(problems({ BLASTGATE_EMBEDDED_PG_PORT: '7000', BLASTGATE_EMBEDDED_REDIS_PORT: '7000' })).toEqual([
      'BLASTGATE_EMBEDDED_PG_PORT and BLASTGATE_EMBEDDED_REDIS_PORT must be different ports (both are 7000)',
    ]);
    expect(problems({ PORT: '54329' })).toEqual([
      'PORT and BLASTGATE_EMBEDDED_PG_PORT must be different ports (both are 54329)',
    ]);
    const external = { DATABASE_URL: 'postgres://db/x', REDIS_URL: 'redis://r:6379', BLASTGATE_SNAPSHOT_KEY: HEX_KEY };
    expect(problems({ ...external, PORT: '54329' })).toEqual([]);
  });
});

const HEX_KEY = '00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff';
const B64_KEY = Buffer.from(HEX_KEY, 'hex').toString('base64');
const EXTERNAL = { DATABASE_URL: 'postgres://db/x', REDIS_URL: 'redis://r:6379' };

describe('snapshot master key', () => {
  const dir = mkdtempSync(join(tmpdir(), 'blastgate-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, text, { mode: 0o600 });
    return f;
  };

  it('takes 32 bytes as hex or base64, inline or from a file (trailing newline and all)', () => {
    const want = Buffer.from(HEX_KEY, 'hex');
    expect(loadConfig({ ...EXTERNAL, BLASTGATE_SNAPSHOT_KEY: HEX_KEY }).snapshotKey).toEqual(want);
    expect(loadConfig({ ...EXTERNAL, BLASTGATE_SNAPSHOT_KEY: B64_KEY }).snapshotKey).toEqual(want);
    const f = file('key', `${B64_KEY}\n`);
    expect(loadConfig({ ...EXTERNAL, BLASTGATE_SNAPSHOT_KEY_FILE: f }).snapshotKey).toEqual(want);
  });

  it('production (DATABASE_URL set) without a key refuses to start, saying what to set and why', () => {
    for (const env of [EXTERNAL, { DATABASE_URL: 'postgres://db/x' }]) {
      const found = problems(env);
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(
        /^BLASTGATE_SNAPSHOT_KEY \(or BLASTGATE_SNAPSHOT_KEY_FILE\) must be set when DATABASE_URL is set/,
      );
      expect(found[0]).toContain('openssl rand -base64 32');
    }
    // Embedded PostgreSQL: the key is generated with its data (server.ts), so none is needed here.
    expect(loadConfig({ REDIS_URL: 'redis://r:6379' }).snapshotKey).toBeUndefined();
    expect(loadConfig({}).snapshotKey).toBeUndefined();
  });

  it('rejects a malformed key naming the variable and the accepted forms, never showing the value', () => {
    const secret = 'not-a-key-but-still-a-secret';
    const found = problems({ ...EXTERNAL, BLASTGATE_SNAPSHOT_KEY: secret });
    expect(found).toEqual([
      `BLASTGATE_SNAPSHOT_KEY must be 32 bytes written as 64 hex characters or as base64 (44 characters, e.g. from \`openssl rand -base64 32\`) (got ${secret.length} characters; a key is never shown)`,
    ]);
    // 31 bytes of hex, 16 bytes of base64: the right alphabet, the wrong size.
    expect(problems({ BLASTGATE_SNAPSHOT_KEY: HEX_KEY.slice(2) })[0]).toMatch(
      /^BLASTGATE_SNAPSHOT_KEY must be 32 bytes/,
    );
    expect(problems({ BLASTGATE_SNAPSHOT_KEY: Buffer.alloc(16).toString('base64') })[0]).toMatch(/got 24 characters/);
    const f = file('short', 'abc\n');
    expect(problems({ BLASTGATE_SNAPSHOT_KEY_FILE: f })).toEqual([
      expect.stringMatching(
        new RegExp(
          `^BLASTGATE_SNAPSHOT_KEY_FILE \\(${f}\\) must be 32 bytes.*\\(got 3 characters; a key is never shown\\)$`,
        ),
      ),
    ]);
  });

  it('rejects both forms at once, and a file that cannot be read', () => {
    expect(problems({ BLASTGATE_SNAPSHOT_KEY: HEX_KEY, BLASTGATE_SNAPSHOT_KEY_FILE: file('k2', HEX_KEY) })).toEqual([
      'BLASTGATE_SNAPSHOT_KEY and BLASTGATE_SNAPSHOT_KEY_FILE are both set: set one of them',
    ]);
    const missing = join(dir, 'missing');
    expect(problems({ ...EXTERNAL, BLASTGATE_SNAPSHOT_KEY_FILE: missing })).toEqual([
      `BLASTGATE_SNAPSHOT_KEY_FILE cannot be read (${missing}: ENOENT)`,
    ]);
    if (process.getuid?.() !== 0) {
      // root reads any file, so an unreadable file is only unreadable to others
      const locked = file('locked', HEX_KEY);
      chmodSync(locked, 0o000);
      expect(problems({ BLASTGATE_SNAPSHOT_KEY_FILE: locked })).toEqual([
        `BLASTGATE_SNAPSHOT_KEY_FILE cannot be read (${locked}: EACCES)`,
      ]);
    }
  });
});
