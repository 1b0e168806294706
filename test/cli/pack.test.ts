// The CLI as users get it: `npx blastgate` in this checkout, and the tarball `npm pack` makes,
// installed into an empty folder and run against a real API (its dependencies come from the npm
// cache where it has them; packuments the cache lacks come from the registry). Extra Node
// binaries to try the tarball with (e.g. Node 22 and 24) can be listed, colon-separated, in
// BLASTGATE_TEST_NODE_BINS.
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { CLI_ROOT, runCli } from '../support/cli.ts';
import { seedRegistry } from '../support/seed.ts';

const run = promisify(execFile);
let t: TestApp;
let url: string;
let dir: string;

beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 2, appsPerSite: 2 });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), 'bg-cli-pack-'));
});
afterAll(async () => {
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('blastgate as installed', () => {
  it('runs as `npx blastgate` in the checkout', async () => {
    const help = await runCli(['--help'], { bin: ['npx', '--no-install', 'blastgate'] });
    expect(help.code, help.stderr).toBe(0);
    expect(help.stdout).toContain('Usage: blastgate');
    const list = await runCli(['--json', 'tokens', 'list'], { url, token: t.tokens.admin, bin: ['npx', 'blastgate'] });
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { items: unknown[] }).items.length).toBeGreaterThan(0);
  });

  it('runs from the npm pack tarball installed into an empty folder', { timeout: 600_000 }, async () => {
    const packed = await run('npm', ['pack', '--pack-destination', dir, '--json', '--ignore-scripts'], {
      cwd: CLI_ROOT,
      maxBuffer: 16 << 20,
    });
    const [{ filename, files }] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
    const paths = files.map((f) => f.path);
    expect(paths).toContain('bin/blastgate.js');
    expect(paths).toContain('src/cli/main.ts');
    // Only the CLI: no server code, tests or data in the tarball, apart from the three dependency-free
    // modules the CLI shares with the server (the names of the settings, for its warning about a
    // misspelt one; the duplicate-key check of its JSON arguments and lists; the escaping of text
    // a downstream wrote, such as a probe's detail, before it reaches a terminal).
    expect(paths.filter((p) => p.startsWith('src/') && !p.startsWith('src/cli/'))).toEqual([
      'src/lib/env-names.ts',
      'src/lib/json-keys.ts',
      'src/lib/text.ts',
    ]);
    expect(paths.some((p) => p.startsWith('test/'))).toBe(false);

    const app = join(dir, 'app');
    await run('mkdir', ['-p', app]);
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'cli-user', private: true }));
    await run(
      'npm',
      ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', join(dir, filename)],
      { cwd: app, maxBuffer: 16 << 20, timeout: 540_000 },
    );
    const bin = join(app, 'node_modules', '.bin', 'blastgate');
    const extra = (process.env.BLASTGATE_TEST_NODE_BINS ?? '').split(':').filter(Boolean);
    const launchers = [
      [bin],
      ...extra.map((node) => [node, join(app, 'node_modules', 'blastgate', 'bin', 'blastgate.js')]),
    ];
    for (const launcher of launchers) {
      const help = await runCli(['--help'], { bin: launcher });
      expect(help.code, `${launcher.join(' ')}: ${help.stderr}`).toBe(0);
      expect(help.stdout).toContain('Commands:');
      // A real command against the API: a dry run of two registry-unknown IDs is rejected (10).
      const planned = await runCli(
        ['--json', 'plan', '--type', 'app', '--reason', 'From the tarball', '--ticket', 'T-2'],
        { url, token: t.tokens.requester, bin: launcher, input: 'app_x1\napp_x2\n' },
      );
      expect(planned.code, planned.stderr).toBe(10);
      const err = JSON.parse(planned.stderr.trim().split('\n').pop()!) as { error: { code: string } };
      expect(err.error.code).toBe('PLAN_REJECTED');
    }
  });
});
