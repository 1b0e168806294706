// A separate worker process lowers its own CPU priority (BLASTGATE_WORKER_NICE, 10 unless set), so
// that on a host it shares with the API the operators' reads and commands are served first.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildExecHarness, type ExecHarness } from '../support/execution.ts';
import { killAllWorkers, spawnWorker } from '../support/worker-child.ts';

let h: ExecHarness;

/** The nice value of a process (field 19 of /proc/<pid>/stat; the name in field 2 may hold spaces). */
const niceOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);

beforeAll(async () => {
  h = await buildExecHarness({ workers: 0 });
});
afterAll(async () => {
  await killAllWorkers();
  await h?.close();
});

describe('worker process priority', () => {
  it.each([
    [undefined, 10],
    ['0', 0],
    ['19', 19],
  ])('BLASTGATE_WORKER_NICE=%s: the worker runs at nice %i and says so', async (set, nice) => {
    const w = await spawnWorker({
      databaseUrl: h.databaseUrl,
      redisUrl: h.redisUrl,
      queuePrefix: h.prefix,
      signingSecret: 'worker-nice-test-secret-0000000000',
      env: set === undefined ? {} : { BLASTGATE_WORKER_NICE: set },
    });
    try {
      expect(niceOf(w.pid)).toBe(nice);
      expect(w.output()).toMatch(new RegExp(`"nice":${nice}\\b`));
    } finally {
      await w.kill();
    }
  });
});
