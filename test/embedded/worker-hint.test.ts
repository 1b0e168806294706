// The start banner of an embedded start without in-process workers gives the command that starts
// one, and that command works as printed: "run `npm run worker`" alone stopped at once with
// "DATABASE_URL and REDIS_URL must be set" (a new-user trial), the local servers' ports and the key
// files the start generated being nowhere to be seen.
import { spawn } from 'node:child_process';
import { afterEach, expect, it } from 'vitest';
import { cleanUp, initialisedDataDir, ROOT, startServer, type ServerChild } from './helpers.ts';

let dir: string | undefined;
let server: ServerChild | undefined;
afterEach(async () => {
  if (dir) await cleanUp(dir, server);
  dir = undefined;
  server = undefined;
});

it('prints a worker command that starts a worker on the local servers and key files', async () => {
  dir = await initialisedDataDir();
  server = await startServer(dir, { BLASTGATE_WORKERS_IN_PROCESS: 'false' });
  const line = /\n {2}Workers: {5}not in this process; start one .*\n {4}(.*npm run worker)\n/.exec(server.output());
  expect(line, server.output()).not.toBeNull();
  const command = line![1]!;
  expect(command).toContain(`DATABASE_URL=postgres://`);
  expect(command).toContain(`REDIS_URL=redis://127.0.0.1:${server.redisPort}`);
  expect(command).toContain(`BLASTGATE_SNAPSHOT_KEY_FILE=${dir}/snapshot-key`);
  expect(command).toContain(`BLASTGATE_SIGNING_SECRET_FILE=${dir}/signing-secret`);
  // The API allows this machine's downstreams in embedded mode; a worker given both URLs would not.
  expect(command).toContain('BLASTGATE_DOWNSTREAM_ALLOW=127.0.0.1,::1,localhost');
  // As a shell would run it: the variables before `npm run worker`, nothing else of Blastgate's.
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && k !== 'DATABASE_URL' && k !== 'REDIS_URL' && !k.startsWith('BLASTGATE_')) env[k] = v;
  // In the checkout, whatever folder the shell is in (npm run worker reads its package.json).
  expect(command.startsWith(`cd ${ROOT} && `), command).toBe(true);
  for (const pair of command
    .replace(/^cd \S+ && /, '')
    .replace(/ npm run worker$/, '')
    .split(' ')) {
    const at = pair.indexOf('=');
    env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  const worker = spawn(process.execPath, ['--import', 'tsx', 'src/worker.ts'], {
    cwd: ROOT,
    env: { ...env, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  worker.stdout.on('data', (d: Buffer) => (out += d.toString()));
  worker.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise((res) => worker.once('exit', res));
  try {
    const end = Date.now() + 60_000;
    while (!out.includes('workers started') && worker.exitCode === null && Date.now() < end)
      await new Promise((r) => setTimeout(r, 100));
    expect(out).toContain('workers started');
  } finally {
    worker.kill('SIGTERM');
    await exited;
  }
});
