// The stop report says only what is true: a server that had already exited when the stop began
// (killed, crashed) is named as such, not as one this stop stopped (a trial: Redis killed with
// kill -9, then Ctrl-C printed "stopped the local Redis (pid …)").
import { spawn, spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { stopAll, type StopPlan } from '../../src/embedded/stop.ts';

const plan = (pid: number, name: string): StopPlan => ({
  pid,
  comm: 'sleep',
  name,
  steps: [{ signal: 'SIGTERM', waitMs: 5_000, what: 'SIGTERM' }],
});

it('names a server that was gone before the stop as gone, and one it stopped as stopped', async () => {
  const live = spawn('sleep', ['60'], { stdio: 'ignore' });
  const exited = spawnSync('sh', ['-c', 'sleep 0 & echo $!'], { encoding: 'utf8' });
  const deadPid = Number(exited.stdout.trim());
  await new Promise((r) => setTimeout(r, 100));
  const logs: string[] = [];
  const report = stopAll([plan(deadPid, 'Redis'), plan(live.pid!, 'PostgreSQL')], (m) => logs.push(m));
  expect(report).toEqual({
    ok: true,
    message: `stopped the local PostgreSQL (pid ${live.pid}); the local Redis (pid ${deadPid}) had already exited`,
  });
});
