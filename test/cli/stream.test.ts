// 1,000,000 IDs streamed from a file by the CLI: the process stays small (it never holds the list),
// the server gets every line (the dry run counts 1,000,000 IDs), and an invalid UTF-8 byte in the
// list stops the upload naming its line instead of being replaced, as a line longer than the server
// reads does before it is gathered.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.ts';
import { jsonError, reportedRssKiB, runCli } from '../support/cli.ts';
import { seedRegistry } from '../support/seed.ts';

const MILLION = 1_000_000;
let t: TestApp;
let url: string;
let dir: string;

async function writeIds(file: string, n: number) {
  const out = createWriteStream(file);
  // 48-character IDs: the list is ~49 MB, so holding it (as text or as strings) would show.
  for (let i = 0; i < n; i += 10_000) {
    let chunk = '';
    for (let j = i; j < Math.min(n, i + 10_000); j++) chunk += `app_unknown_${String(j).padStart(36, '0')}\n`;
    if (!out.write(chunk)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

beforeAll(async () => {
  t = await buildTestApp();
  await seedRegistry(t.databaseUrl, { sites: 3, appsPerSite: 2 });
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  url = `http://127.0.0.1:${(t.app.server.address() as AddressInfo).port}`;
  dir = await mkdtemp(join(tmpdir(), 'bg-cli-stream-'));
});
afterAll(async () => {
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const plan = (file: string) => [
  '--json',
  'plan',
  '--type',
  'app',
  '--reason',
  'Stream test',
  '--ticket',
  'T-1',
  '--ids-file',
  file,
];

describe('submitting 1,000,000 IDs', () => {
  it('streams them from a file with a small, bounded CLI process', { timeout: 600_000 }, async () => {
    const small = join(dir, 'small.txt');
    const big = join(dir, 'million.txt');
    await writeIds(small, 1_000);
    await writeIds(big, MILLION);
    const bytes = (await stat(big)).size;
    expect(bytes).toBeGreaterThan(45_000_000);
    const env = { BLASTGATE_DEBUG_RSS: '1' };

    const base = await runCli(plan(small), { url, token: t.tokens.requester, env });
    expect(base.code, base.stderr).toBe(10);
    const baseRss = reportedRssKiB(base);

    const run = await runCli(plan(big), { url, token: t.tokens.requester, env, timeoutMs: 540_000 });
    expect(run.code, run.stderr).toBe(10);
    const err = jsonError(run);
    expect(err.error.code).toBe('PLAN_REJECTED');
    // Every line arrived: the dry run classified all of them.
    const counts = err.error.details?.counts as Record<string, number>;
    expect(
      Object.entries(counts).reduce((n, [c, k]) => (c === 'ok' ? n : n + k), 0),
      JSON.stringify(counts),
    ).toBe(MILLION);
    const rss = reportedRssKiB(run);
    console.log(`CLI peak RSS: 1,000 IDs ${baseRss} KiB; 1,000,000 IDs (${bytes} bytes) ${rss} KiB`);
    // Holding the list would add at least its size (49 MB as bytes, far more as strings).
    expect(rss - baseRss).toBeLessThan(24 * 1024);
    expect(rss * 1024).toBeLessThan(baseRss * 1024 + bytes / 2);
  });

  it('stops on an invalid UTF-8 byte, naming the line, before the server plans anything', async () => {
    const file = join(dir, 'bad.txt');
    await writeFile(file, Buffer.concat([Buffer.from('app_00000_00\napp_'), Buffer.from([0xff]), Buffer.from('x\n')]));
    const r = await runCli(plan(file), { url, token: t.tokens.requester });
    expect(r.code).toBe(2);
    expect(jsonError(r).error).toMatchObject({ code: 'INVALID_UTF8', details: { line: 2 } });
  });

  it('ends once the server answered, while its input is still open (a producer still writing)', async () => {
    const r = await runCli(['--json', 'plan', '--type', 'nosuchtype', '--reason', 'Open stdin', '--ticket', 'T-1'], {
      url,
      token: t.tokens.requester,
      input: 'app_00000_00\n'.repeat(20_000), // more than the CLI's first 64 KiB chunk
      keepStdinOpen: true,
      // Bounds the wait: before, the CLI stayed until its stdin ended, here never (killed: code null).
      timeoutMs: 30_000,
    });
    expect(r.code, r.stderr).toBe(2);
    expect(jsonError(r).error).toMatchObject({ code: 'UNKNOWN_TARGET_TYPE', status: 422 });
  });

  it('a typo in --type names the flag and the type meant, and exits 2 as every other typo does (a trial: exit 1, no hint)', async () => {
    const file = join(dir, 'typo.txt');
    await writeFile(file, 'app_00000_00\n');
    const r = await runCli(
      ['--json', 'plan', '--type', 'ap', '--reason', 'Typo', '--ticket', 'T-1', '--ids-file', file],
      {
        url,
        token: t.tokens.requester,
      },
    );
    expect(r.code, r.stderr).toBe(2);
    const e = jsonError(r).error;
    expect(e).toMatchObject({
      code: 'UNKNOWN_TARGET_TYPE',
      status: 422,
      details: { field: 'targetType', flag: '--type', targetType: 'ap', didYouMean: 'app' },
    });
    expect(e.details?.declared).toEqual(expect.arrayContaining(['app', 'site']));
    expect(e.message).toMatch(
      /^--type "ap" is not a type declared in the registry \(did you mean "app"\?\); declared types: /,
    );
  });

  it('stops on a line longer than the server reads, without gathering it: a 50 MB line is refused at 64 KiB', async () => {
    const file = join(dir, 'one-line.bin');
    await writeFile(file, Buffer.concat([Buffer.from('app_00000_00\n'), Buffer.alloc(50 * 1024 * 1024, 0x61)]));
    const small = join(dir, 'two.txt');
    await writeFile(small, 'app_00000_00\napp_00000_01\n');
    const env = { BLASTGATE_DEBUG_RSS: '1' };
    const base = await runCli(plan(small), { url, token: t.tokens.requester, env });
    const r = await runCli(plan(file), { url, token: t.tokens.requester, env });
    expect(r.code, r.stderr).toBe(2);
    expect(jsonError(r).error).toMatchObject({ code: 'LINE_TOO_LONG', details: { line: 2, maxLineBytes: 65_536 } });
    // Gathered, the line alone is 50 MB (as it was: the CLI's peak RSS reached ~400 MB).
    expect(reportedRssKiB(r) - reportedRssKiB(base)).toBeLessThan(24 * 1024);
  });
});
