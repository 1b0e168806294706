// The CLI's configuration: flags over the environment, the token from a file, the API's own
// default address; and the exit code every state of an operation maps to (the README table).
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { misspeltCliSettings, resolveConnection, DEFAULT_URL } from '../../src/cli/config.ts';
import { EXIT, exitForState } from '../../src/cli/exit-codes.ts';
import { OP_STATES } from '../../src/modules/operations/lifecycle-types.ts';
import { runCli } from '../support/cli.ts';

describe('CLI configuration', () => {
  it('defaults to the API default port and lets flags win over the environment', async () => {
    expect(DEFAULT_URL).toBe('http://127.0.0.1:3000');
    expect(resolveConnection({}, {})).toEqual({ url: DEFAULT_URL, token: undefined });
    const env = { BLASTGATE_URL: 'http://env:1/', BLASTGATE_TOKEN: 'env-token' };
    expect(resolveConnection({}, env)).toEqual({ url: 'http://env:1', token: 'env-token' });
    expect(resolveConnection({ url: 'http://flag:2', token: 'flag-token' }, env)).toEqual({
      url: 'http://flag:2',
      token: 'flag-token',
    });
    const dir = await mkdtemp(join(tmpdir(), 'bg-cli-cfg-'));
    try {
      await writeFile(join(dir, 'tok'), 'file-token\n');
      expect(resolveConnection({ tokenFile: join(dir, 'tok') }, env).token).toBe('file-token');
      expect(() => resolveConnection({ tokenFile: join(dir, 'missing') }, env)).toThrow(/cannot read the token file/);
      expect(() => resolveConnection({ url: 'ftp://x' }, env)).toThrow(/http\(s\) URL/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('maps every operation state to an exit code or to "keep waiting"', () => {
    const table = Object.fromEntries(OP_STATES.map((s) => [s, exitForState(s)]));
    expect(table).toEqual({
      planned: null,
      approved: null,
      running: null,
      baking: null,
      rolling_back: null,
      completed: EXIT.ok,
      rejected: EXIT.rejected,
      paused: EXIT.paused,
      halted: EXIT.stopped,
      rolled_back: EXIT.stopped,
      rollback_incomplete: EXIT.stopped,
      completed_with_failures: EXIT.stopped,
      cancelled: EXIT.stopped,
      failed: EXIT.stopped,
      expired: EXIT.stopped,
    });
  });

  it('usage errors exit 2 (as JSON with --json); no token is a usage error', async () => {
    const missing = await runCli(['--json', 'pause', 'op_1']);
    expect(missing.code).toBe(2);
    expect(JSON.parse(missing.stderr.trim()) as unknown).toMatchObject({ error: { code: 'USAGE' }, exitCode: 2 });
    const noToken = await runCli(['status', 'op_1'], { url: 'http://127.0.0.1:1' });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain('NO_TOKEN');
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
  });
});

// A trial: a token file with a second line came back as "CONNECTION_FAILED: … Headers.append:
// "Bearer bg_…" is an invalid header value", the secret printed whole (with --json too), exit 1.
describe('a token that is not one word of visible ASCII', () => {
  const SECRET = 'bg_ghnfMbyH8j0wSecretPartThatMustNeverShow';
  it.each([
    ['a second line in the token file', { file: `${SECRET}\n${SECRET}\n` }, /more than one line/],
    ['a line break in BLASTGATE_TOKEN', { env: `${SECRET}\nsecond` }, /BLASTGATE_TOKEN holds more than one line/],
    ['a space in --token', { flag: `${SECRET} x` }, /--token holds a space/],
    ['a non-ASCII character in the token file', { file: `${SECRET}€` }, /a character other than visible ASCII/],
    ['a control character in BLASTGATE_TOKEN', { env: `${SECRET}\u0007` }, /a control character/],
  ])('%s: a usage error (exit 2) saying what is wrong, never the token', async (_name, given, said) => {
    const dir = await mkdtemp(join(tmpdir(), 'bg-cli-tok-'));
    try {
      const args = ['--json', 'status', 'op_1'];
      if ('file' in given) {
        await writeFile(join(dir, 'tok'), given.file, { mode: 0o600 });
        args.unshift('--token-file', join(dir, 'tok'));
      }
      if ('flag' in given) args.unshift('--token', given.flag);
      const run = await runCli(args, {
        url: 'http://127.0.0.1:1',
        ...('env' in given ? { token: given.env } : {}),
      });
      expect(run.code).toBe(2);
      expect(run.stdout).toBe('');
      const err = JSON.parse(run.stderr.trim()) as { error: { code: string; message: string } };
      expect(err.error.code).toBe('USAGE');
      expect(err.error.message).toMatch(said);
      expect(run.stderr).not.toContain('SecretPart');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a byte-order mark and surrounding whitespace are still read as the token', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bg-cli-tok-'));
    try {
      await writeFile(join(dir, 'tok'), `\uFEFF  ${SECRET} \r\n`);
      expect(resolveConnection({ tokenFile: join(dir, 'tok') }, {}).token).toBe(SECRET);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a token file other users may read', () => {
  it('is warned about on stderr (chmod 600), and used; a private one is not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bg-cli-tok-'));
    try {
      const file = join(dir, 'tok');
      await writeFile(file, 'bg_readable_token_value\n');
      await chmod(file, 0o644);
      const args = ['--json', '--token-file', file, 'status', 'op_1'];
      const open = await runCli(args, { url: 'http://127.0.0.1:1' });
      expect(open.code).toBe(1); // nothing listens there: the token was read and sent
      const first = JSON.parse(open.stderr.split('\n')[0]!) as { warning: Record<string, unknown> };
      expect(first.warning).toEqual({
        code: 'TOKEN_FILE_READABLE',
        file,
        mode: '0644',
        message: `the token file ${file} is readable by other users (mode 0644): chmod 600 ${file}`,
      });
      expect(open.stderr).not.toContain('bg_readable_token_value');
      await chmod(file, 0o600);
      const closed = await runCli(args, { url: 'http://127.0.0.1:1' });
      expect(closed.stderr).not.toContain('TOKEN_FILE_READABLE');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a misspelt CLI variable', () => {
  const warning =
    'BLASTGATE_QUEUE_PREFX is not a Blastgate setting and is ignored (did you mean BLASTGATE_QUEUE_PREFIX?)';

  it("is named with the CLI's variable it likely meant; the server's settings and far-off names are not the CLI's to judge", () => {
    expect(
      misspeltCliSettings({
        BLASTGATE_QUEUE_PREFX: 'staging-bg',
        BLASTGATE_TOKN_FILE: '/run/secrets/bg',
        BLASTGATE_TOKEN: 't',
        BLASTGATE_WORKER_CONCURRENCY: '4',
        BLASTGATE_WORKER_CONCURENCY: '4',
        BLASTGATE_SECRET_APPS_PROD: 'x',
        BLASTGATE_NO_SUCH_THING_AT_ALL: '1',
        QUEUE_PREFIX: 'x',
      }),
    ).toEqual([
      { variable: 'BLASTGATE_QUEUE_PREFX', didYouMean: 'BLASTGATE_QUEUE_PREFIX', message: warning },
      {
        variable: 'BLASTGATE_TOKN_FILE',
        didYouMean: 'BLASTGATE_TOKEN_FILE',
        message: 'BLASTGATE_TOKN_FILE is not a Blastgate setting and is ignored (did you mean BLASTGATE_TOKEN_FILE?)',
      },
    ]);
  });

  // submit --via-queue with BLASTGATE_QUEUE_PREFX sent the job to the default queue without a word.
  it('is warned about on stderr, never on stdout; with --json as one JSON object per line', async () => {
    const args = ['submit', '--via-queue', '--type', 'app', '--reason', 'r', '--ticket', 'T-1'];
    const env = { BLASTGATE_QUEUE_PREFX: 'staging-bg', BLASTGATE_REDIS_URL: '' };
    const text = await runCli(args, { env, token: 'bg_x', input: 'app_1\n' });
    expect(text.code).toBe(2); // no Redis given: the warning comes first, whatever happens next
    expect(text.stderr).toContain(`blastgate: warning: ${warning}\n`);
    expect(text.stdout).not.toContain('BLASTGATE_QUEUE_PREFX');
    const json = await runCli(['--json', ...args], { env, token: 'bg_x', input: 'app_1\n' });
    expect(json.code).toBe(2);
    expect(json.stdout).toBe('');
    const lines = json.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toEqual({
      warning: {
        code: 'UNKNOWN_SETTING',
        variable: 'BLASTGATE_QUEUE_PREFX',
        didYouMean: 'BLASTGATE_QUEUE_PREFIX',
        message: warning,
      },
    });
    expect(lines.at(-1)).toMatchObject({ error: { code: 'USAGE' }, exitCode: 2 });
  });
});

describe('output into a pipe that closes early (`blastgate … | head -1`)', () => {
  it('ends quietly, without an EPIPE stack trace', async () => {
    const { spawn } = await import('node:child_process');
    const { CLI_BIN } = await import('../support/cli.ts');
    // Help is longer than one line, written after start-up: by then the reader has gone.
    const child = spawn(process.execPath, [CLI_BIN, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
    expect(stderr).not.toMatch(/EPIPE|Error/);
    expect(code).toBe(0);
  });
});
