// A REDIS_URL that leads nowhere stops the start with a message naming it (never its password),
// instead of an API that starts, logs connection errors forever and moves no work. Real Redis:
// the suite's own server, and a port nothing listens on.
import { describe, expect, inject, it } from 'vitest';
import { ConfigError } from '../../src/config.ts';
import { freePort } from '../../src/embedded/local-services.ts';
import { redisProblem } from '../../src/plugins/redis.ts';

describe('REDIS_URL checked at start-up', () => {
  it('a Redis that answers is no problem', async () => {
    expect(await redisProblem(inject('redisUrl'), 2_000)).toBeUndefined();
  });

  it('nothing listening: waits, then names REDIS_URL without the password', async () => {
    const port = await freePort();
    const started = Date.now();
    const problem = await redisProblem(`redis://:s3cret@127.0.0.1:${port}/0`, 1_000);
    expect(problem).toBeInstanceOf(ConfigError);
    expect(problem!.message).toMatch(
      new RegExp(
        `REDIS_URL \\(redis://127\\.0\\.0\\.1:${port}/0\\) cannot be reached \\(waited 1 s\\): .*ECONNREFUSED`,
      ),
    );
    expect(problem!.message).not.toContain('s3cret');
    // It retried for the wait instead of giving up at the first refusal.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it("another server's port (PostgreSQL's) is said to answer, but not as Redis", async () => {
    const pg = new URL(inject('pgRootUrl'));
    const problem = await redisProblem(`redis://${pg.hostname}:${pg.port}/0`, 1_000);
    expect(problem).toBeInstanceOf(ConfigError);
    expect(problem!.message).toMatch(
      new RegExp(
        `REDIS_URL \\(redis://127\\.0\\.0\\.1:${pg.port}/0\\) did not answer as Redis within 1 s: .*is it Redis's\\?`,
      ),
    );
  });

  it('a Redis that says no (a database it does not have) is named at once', async () => {
    const url = new URL(inject('redisUrl'));
    url.pathname = '/99';
    const problem = await redisProblem(url.href, 10_000);
    expect(problem).toBeInstanceOf(ConfigError);
    expect(problem!.message).toMatch(/REDIS_URL \(redis:\/\/127\.0\.0\.1:\d+\/99\) is refused by Redis: .*DB index/);
  });
});
