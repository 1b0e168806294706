// Runs the blastgate CLI as a child process (the real launcher, bin/blastgate.js), with its
// configuration in the environment only, and collects its exit code and output.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI_ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI_BIN = fileURLToPath(new URL('../../bin/blastgate.js', import.meta.url));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  o: {
    url?: string;
    token?: string;
    env?: Record<string, string>;
    input?: string;
    /** Write `input` but leave stdin open, as a producer still writing would. */
    keepStdinOpen?: boolean;
    bin?: string[];
    timeoutMs?: number;
  } = {},
): Promise<CliRun> {
  const cmd = o.bin ?? [process.execPath, CLI_BIN];
  const env: NodeJS.ProcessEnv = { ...process.env, ...o.env };
  delete env.BLASTGATE_TOKEN;
  delete env.BLASTGATE_URL;
  if (o.url) env.BLASTGATE_URL = o.url;
  if (o.token) env.BLASTGATE_TOKEN = o.token;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, [...cmd.slice(1), ...args], { cwd: CLI_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (o.keepStdinOpen) {
      child.stdin.on('error', () => undefined); // the CLI may end without reading the rest
      child.stdin.write(o.input ?? '');
    } else child.stdin.end(o.input ?? '');
  });
}

/** The maxRSS (KiB) the CLI reports on stderr with BLASTGATE_DEBUG_RSS=1. */
export function reportedRssKiB(r: CliRun): number {
  const m = /blastgate-debug maxRssKiB=(\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no RSS reported:\n${r.stderr}`);
  return Number(m[1]);
}

/** The last JSON object on stderr (an error in --json mode). */
export function jsonError(r: CliRun): {
  error: { code: string; message: string; details?: Record<string, unknown>; status?: number };
  exitCode: number;
} {
  const line = r.stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .pop();
  if (!line) throw new Error(`no JSON error on stderr:\n${r.stderr}`);
  return JSON.parse(line);
}
