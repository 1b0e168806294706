// Child processes of the chaos harness (the API, the workers, Redis), supervised the way a process
// manager would: a process that exits on its own is recorded (with its last output lines) and
// started again after a short delay; a process the harness kills on purpose is not a crash.
//
// No child may outlive the harness, even one killed with SIGKILL: each runs under a small sh
// wrapper that holds the read end of a pipe from this process and SIGKILLs the child when the pipe
// closes. Children get a process group of their own (detached), so a Ctrl-C in the terminal reaches
// only the harness, which then tears everything down in order. Signals go to the child itself,
// never to a group (process.kill(0) would be our own group).
import { spawn, type ChildProcess } from 'node:child_process';

const WRAPPER =
  'exec 3<&0; "$@" & c=$!; echo "chaos-pid $c"; ( read -r _ <&3; kill -9 "$c" 2>/dev/null ) & g=$!; wait "$c"; s=$?; kill "$g" 2>/dev/null; wait "$g" 2>/dev/null; exit "$s"';
const KEEP_LINES = 400;
const MAX_LINE = 4_000;

export interface ProcSpec {
  name: string;
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** A line of output that means "started" (e.g. 'workers started'). */
  readyLine: string;
  /** Checked after readyLine until it answers true (e.g. GET /readyz), bounded by startTimeoutMs. */
  readyCheck?: () => Promise<boolean>;
  startTimeoutMs?: number;
}

export interface ExitRecord {
  name: string;
  pid: number;
  /** Epoch ms. */
  at: number;
  /** Exit status of the wrapper: the child's, or 128+n when it was killed by signal n. */
  code: number | null;
  /** The last lines of output before the exit (stderr lines prefixed with "[stderr] "). */
  tail: string[];
  restarted: boolean;
  restartError?: string;
}

export class Managed {
  private child: ChildProcess | undefined;
  private _pid = 0;
  private lines: string[] = [];
  private exitPromise: Promise<void> = Promise.resolve();
  private expectExit = false;
  private closing = false;
  private ready = false;
  private restarting: Promise<void> | undefined;
  private _stopped = false;
  /** Unplanned exits after the process was ready (crashes), oldest first. */
  readonly crashes: ExitRecord[] = [];

  constructor(
    readonly spec: ProcSpec,
    private readonly opts: { autoRestart: boolean; restartDelayMs?: number; onCrash?: (r: ExitRecord) => void },
  ) {}

  get name() {
    return this.spec.name;
  }
  get pid() {
    return this._pid;
  }
  get alive() {
    return this.child !== undefined;
  }
  get stopped() {
    return this._stopped;
  }

  tail(n = 30): string[] {
    return this.lines.slice(-n);
  }

  /** Spawns the process and resolves once it is ready (rejects, with its output, when it is not). */
  async start(): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    this.closing = false;
    this.expectExit = false;
    this.ready = false;
    this._stopped = false;
    this._pid = 0;
    // The output of this process only: a crash report must not show its predecessor's lines.
    this.lines = [`--- start ${new Date().toISOString()}`];
    const child = spawn('sh', ['-c', WRAPPER, 'sh', this.spec.command, ...this.spec.args], {
      cwd: this.spec.cwd,
      env: this.spec.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    this.child = child;
    child.stdin.on('error', () => undefined);
    let onLine: ((line: string) => void) | undefined;
    const keep = (prefix: string) => {
      let partial = '';
      return (buf: Buffer) => {
        const parts = (partial + buf.toString('utf8')).split('\n');
        partial = parts.pop() ?? '';
        for (const line of parts) {
          const m = /^chaos-pid (\d+)$/.exec(line);
          if (m) {
            this._pid = Number(m[1]);
            continue;
          }
          this.lines.push(prefix + (line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line));
          if (this.lines.length > KEEP_LINES) this.lines.splice(0, this.lines.length - KEEP_LINES);
          onLine?.(line);
        }
      };
    };
    child.stdout.on('data', keep(''));
    child.stderr.on('data', keep('[stderr] '));
    this.exitPromise = new Promise<void>((resolve) => {
      child.once('exit', (code) => {
        const pid = this._pid;
        this.child = undefined;
        this._stopped = false;
        child.stdin.end();
        const wasReady = this.ready;
        this.ready = false;
        this.lines.push(`--- exit code=${code} ${new Date().toISOString()}`);
        if (wasReady && !this.expectExit && !this.closing) this.crashed(pid, code);
        resolve();
      });
    });
    const exited = this.exitPromise;

    const timeoutMs = this.spec.startTimeoutMs ?? 60_000;
    const deadline = Date.now() + timeoutMs;
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${this.name} did not print "${this.spec.readyLine}" within ${timeoutMs} ms`)),
          timeoutMs,
        );
        onLine = (line) => {
          if (line.includes(this.spec.readyLine)) {
            clearTimeout(timer);
            onLine = undefined;
            resolve();
          }
        };
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`${this.name} exited while starting`));
        });
      });
      if (this.spec.readyCheck) {
        for (;;) {
          if (!this.child) throw new Error(`${this.name} exited while starting`);
          if (await this.spec.readyCheck().catch(() => false)) break;
          if (Date.now() > deadline) throw new Error(`${this.name} never passed its readiness check`);
          await sleep(100);
        }
      }
      this.ready = true;
    } catch (err) {
      this.expectExit = true;
      await this.kill9();
      throw new Error(`${(err as Error).message}\n${this.tail(20).join('\n')}`);
    }
  }

  private crashed(pid: number, code: number | null) {
    const rec: ExitRecord = { name: this.name, pid, at: Date.now(), code, tail: this.tail(25), restarted: false };
    this.crashes.push(rec);
    this.opts.onCrash?.(rec);
    if (!this.opts.autoRestart) return;
    // Like a process manager (Restart=on-failure): try again after a delay, for up to a minute,
    // since whatever killed it (a database restart) may still be going on.
    this.restarting = (async () => {
      const until = Date.now() + 60_000;
      let delay = this.opts.restartDelayMs ?? 1_000;
      for (;;) {
        await sleep(delay);
        if (this.closing || this.child) return;
        try {
          await this.start();
          rec.restarted = true;
          return;
        } catch (err) {
          rec.restartError = (err as Error).message.split('\n')[0];
          if (Date.now() > until) return;
          delay = Math.min(delay * 2, 5_000);
        }
      }
    })().finally(() => {
      this.restarting = undefined;
    });
  }

  /** Resolves when an automatic restart in progress (if any) has finished. */
  async settled(): Promise<void> {
    while (this.restarting) await this.restarting;
  }

  /** SIGKILL on purpose (not recorded as a crash). Resolves on exit. */
  async kill9(): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.expectExit = true;
    if (this._pid > 0) {
      try {
        process.kill(this._pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    } else child.stdin?.end(); // pid not reported yet: the wrapper's watcher kills it
    await this.exitPromise;
  }

  signal(sig: 'SIGSTOP' | 'SIGCONT' | 'SIGTERM') {
    if (!this.child || this._pid <= 0) throw new Error(`${this.name} is not running`);
    process.kill(this._pid, sig);
    if (sig === 'SIGSTOP') this._stopped = true;
    if (sig === 'SIGCONT') this._stopped = false;
  }

  /** Stops for good: no restart; SIGKILL (these processes keep no state the harness needs). */
  async close(): Promise<void> {
    this.closing = true;
    await this.kill9();
    await this.settled();
    await this.kill9();
  }

  /** Synchronous last resort for process 'exit' handlers. */
  killSync() {
    this.closing = true;
    if (this._pid > 0 && this.child) {
      try {
        process.kill(this._pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    this.child?.stdin?.end();
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** A pino JSON line as `level msg: error (first frame in src/)`; other lines as they are. */
export function condense(line: string): string {
  const prefix = line.startsWith('[stderr] ') ? '[stderr] ' : '';
  const body = line.slice(prefix.length);
  if (!body.startsWith('{')) return line.length > 300 ? `${line.slice(0, 300)}…` : line;
  try {
    const j = JSON.parse(body) as {
      level?: number;
      msg?: string;
      err?: { message?: string; stack?: string };
      jobId?: string;
    };
    const frame = j.err?.stack
      ?.split('\n')
      .find((f) => f.includes('/src/'))
      ?.trim()
      .replace(/\(?\/\S*\/src\//, '(src/');
    const err = j.err ? `: ${j.err.message ?? ''}${frame ? ` [${frame}]` : ''}` : '';
    return `${prefix}${LEVELS[j.level ?? 0] ?? j.level} ${j.msg ?? ''}${j.jobId ? ` (job ${j.jobId})` : ''}${err}`;
  } catch {
    return line.length > 300 ? `${line.slice(0, 300)}…` : line;
  }
}
