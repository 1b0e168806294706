// stop() never reports a server stopped that still runs: it waits, escalates, and says what is
// true. A server that ignores its shutdown signals is made with SIGSTOP (signals stay pending).
import { afterEach, expect, it } from 'vitest';
import { startLocalServices } from '../../src/embedded/local-services.ts';
import { cleanUp, pidAlive, tempDataDir, waitUntil } from './helpers.ts';

let dir: string;
let frozen: number | undefined;
afterEach(async () => {
  if (frozen !== undefined && pidAlive(frozen)) process.kill(frozen, 'SIGCONT');
  frozen = undefined;
  await cleanUp(dir);
});

it('escalates, and reports a server it could not stop as still running', { timeout: 180_000 }, async () => {
  dir = tempDataDir();
  const logs: string[] = [];
  // Durability "fast": this test is about stopping, not about the data (saves an initdb sync).
  const s = await startLocalServices({ dir, durability: 'fast', log: (m) => logs.push(m) });
  const { postgres, redis } = s.pids;
  frozen = postgres;
  process.kill(redis, 'SIGSTOP'); // SIGTERM stays pending; SIGKILL still ends it
  process.kill(postgres, 'SIGSTOP'); // fast and immediate shutdown both stay pending

  const started = Date.now();
  const report = s.stop();
  const tookMs = Date.now() - started;
  expect(report).toEqual({
    ok: false,
    message: `stopped the local Redis (pid ${redis}); could not stop the local PostgreSQL (pid ${postgres} still running)`,
  });
  expect(pidAlive(redis)).toBe(false);
  expect(pidAlive(postgres)).toBe(true);
  expect(logs).toContain(`the local Redis (pid ${redis}) still runs 10 s after SIGTERM: SIGKILL`);
  expect(logs).toContain(
    `the local PostgreSQL (pid ${postgres}) still runs 20 s after fast shutdown: immediate shutdown`,
  );
  // Both are waited for at the same time: bounded by the slowest plan (20 s + 10 s), not the sum.
  expect(tookMs).toBeLessThan(40_000);

  // Once it can act on its pending shutdown signals it goes, and a second stop() verifies that.
  process.kill(postgres, 'SIGCONT');
  await waitUntil(() => !pidAlive(postgres), 60_000, 'PostgreSQL to exit after SIGCONT');
  expect(s.stop()).toEqual({
    ok: true,
    message: `stopped the local Redis (pid ${redis}) and PostgreSQL (pid ${postgres})`,
  });
});
