// The embedded watcher (src/embedded/watch.ts) with stand-in servers: a copy of `sleep` named
// redis-server, so that /proc tells it apart as the watcher does a real one. It says a server that
// stopped once, with the command that starts it again on the same data, then that it runs again
// (a trial started Redis by hand and heard nothing more), and watches the new process from then on.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { watchLocalServers } from '../../src/embedded/watch.ts';
import { shellCommand } from '../../src/embedded/procs.ts';

const dir = mkdtempSync(join(tmpdir(), 'blastgate-watch-'));
const fake = join(dir, 'redis-server');
copyFileSync('/bin/sleep', fake);
const children: ChildProcess[] = [];
const startFake = async () => {
  const c = spawn(fake, ['60'], { stdio: 'ignore' });
  children.push(c);
  await new Promise((f) => c.once('spawn', f));
  return c;
};
const stopped = (c: ChildProcess) =>
  new Promise<void>((f) => {
    c.once('exit', () => f());
    c.kill('SIGKILL');
  });
afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

const until = async (what: string, ok: () => boolean) => {
  for (let i = 0; i < 200 && !ok(); i++) await new Promise((f) => setTimeout(f, 25));
  if (!ok()) throw new Error(`timed out waiting for ${what}`);
};

describe('watchLocalServers', () => {
  it('says a stop once with the command that starts it again, then its return, then the next stop', async () => {
    let current: ChildProcess | undefined = await startFake();
    const said: string[] = [];
    const startAgain = shellCommand([fake, '--port', '6379', '--save', '']);
    const unwatch = watchLocalServers(
      { redis: { pid: current.pid!, locate: () => current?.pid, startAgain } },
      '/data',
      (m) => said.push(m),
      25,
    );
    try {
      const first = current.pid!;
      await stopped(current);
      current = undefined;
      await until('the stop to be said', () => said.length === 1);
      expect(said[0]).toContain(`the local Redis (pid ${first}) has stopped`);
      expect(said[0]).toContain(`Start it again while this start runs, on the same data and port: ${startAgain}`);
      expect(startAgain).toMatch(/ --save ''$/);
      await new Promise((f) => setTimeout(f, 200));
      expect(said).toHaveLength(1); // said once, not every check

      current = await startFake();
      await until('the return to be said', () => said.length === 2);
      expect(said[1]).toBe(
        `the local Redis runs again (pid ${current.pid}) on the data in /data/: this start uses it as it is`,
      );

      const second = current.pid!;
      await stopped(current);
      current = undefined;
      await until('the second stop to be said', () => said.length === 3);
      expect(said[2]).toContain(`the local Redis (pid ${second}) has stopped`);
    } finally {
      unwatch();
    }
  });
});
