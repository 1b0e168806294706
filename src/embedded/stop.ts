// Stopping the local servers: each is signalled and waited for (bounded), escalating when it does
// not stop, and the report says only what was verified.
import { isRunning } from './procs.ts';

export interface StopReport {
  /** True when every server this start owned is verified gone. */
  ok: boolean;
  /** What is true after the attempt, e.g. "stopped the local PostgreSQL (pid 12) and Redis (pid 34)". */
  message: string;
}

// Bounds per step; PostgreSQL and Redis are stopped at the same time, so a stop that has to
// escalate takes at most 30 s. A fast shutdown writes a checkpoint and the machine may be busy,
// hence 20 s before an immediate shutdown (which loses nothing committed: the WAL is synced).
const PG_FAST_STOP_MS = 20_000;
const PG_IMMEDIATE_STOP_MS = 10_000;
const REDIS_TERM_STOP_MS = 10_000;
const REDIS_KILL_STOP_MS = 5_000;

export interface StopPlan {
  pid: number;
  /** The process name in /proc, so that a reused pid is never signalled. */
  comm: string;
  name: string;
  steps: { signal: NodeJS.Signals; waitMs: number; what: string }[];
}

// PostgreSQL's shutdown signals (docs, "Shutting Down the Server"): SIGINT is a fast shutdown
// (ends sessions, writes a checkpoint), SIGQUIT an immediate one (recovery from the WAL at the
// next start; with fsync on no committed data is lost). This is what `pg_ctl stop -m fast` and
// `-m immediate` send; signalling from here keeps stop() synchronous and in this process (a
// Ctrl-C that reaches our process group cannot cut a pg_ctl child short).
export const postgresStop = (pid: number): StopPlan => ({
  pid,
  comm: 'postgres',
  name: 'PostgreSQL',
  steps: [
    { signal: 'SIGINT', waitMs: PG_FAST_STOP_MS, what: 'fast shutdown' },
    { signal: 'SIGQUIT', waitMs: PG_IMMEDIATE_STOP_MS, what: 'immediate shutdown' },
  ],
});

// Redis on SIGTERM flushes its append-only file and exits; SIGKILL is the last resort.
export const redisStop = (pid: number): StopPlan => ({
  pid,
  comm: 'redis-server',
  name: 'Redis',
  steps: [
    { signal: 'SIGTERM', waitMs: REDIS_TERM_STOP_MS, what: 'SIGTERM' },
    { signal: 'SIGKILL', waitMs: REDIS_KILL_STOP_MS, what: 'SIGKILL' },
  ],
});

/**
 * Stops processes and reports in one sentence what is true afterwards. `signalled`: the pids an
 * earlier stop of the same servers signalled (a stop that could not finish, called again), which
 * this one adds to: one that exits later was still stopped by that stop.
 */
export function stopAll(plans: StopPlan[], log: (m: string) => void, signalled = new Set<number>()): StopReport {
  const results = stopProcesses(plans, log);
  for (const r of results) if (r.signalled) signalled.add(r.pid);
  const stopped = results.filter((r) => r.ok && signalled.has(r.pid));
  const gone = results.filter((r) => r.ok && !signalled.has(r.pid));
  const failed = results.filter((r) => !r.ok);
  const parts: string[] = [];
  if (stopped.length) parts.push(`stopped the local ${stopped.map((r) => `${r.name} (pid ${r.pid})`).join(' and ')}`);
  // Killed or crashed while the API ran: this stop did nothing to it, and says so.
  for (const r of gone) parts.push(`the local ${r.name} (pid ${r.pid}) had already exited`);
  for (const r of failed) parts.push(`could not stop the local ${r.name} (pid ${r.pid} still running)`);
  return { ok: failed.length === 0, message: parts.join('; ') };
}

/** Stops one process (a server left running by an earlier start) and says what is true. */
export function stopOne(plan: StopPlan, log: (m: string) => void): StopReport {
  const { ok, signalled } = stopProcesses([plan], log)[0]!;
  const what = `the local ${plan.name} (pid ${plan.pid}${ok ? ')' : ' still running)'}`;
  if (ok && !signalled) return { ok, message: `${what} had already exited` };
  return { ok, message: ok ? `stopped ${what}` : `could not stop ${what}` };
}

/**
 * Signals each process, waits (bounded) until it is gone, escalating to the next step of its plan
 * when it is not; all processes at once, so the worst case is the slowest plan, not their sum.
 * Reports what is true at the end.
 */
function stopProcesses(
  plans: StopPlan[],
  log: (m: string) => void,
): { name: string; pid: number; ok: boolean; signalled: boolean }[] {
  const state = plans.map((plan) => ({ plan, step: -1, until: 0 }));
  const next = (s: (typeof state)[number]) => {
    s.step += 1;
    const step = s.plan.steps[s.step]!;
    if (s.step > 0) {
      const before = s.plan.steps[s.step - 1]!;
      log(
        `the local ${s.plan.name} (pid ${s.plan.pid}) still runs ${before.waitMs / 1000} s after ${before.what}: ${step.what}`,
      );
    }
    try {
      process.kill(s.plan.pid, step.signal);
    } catch {
      /* gone in between */
    }
    s.until = Date.now() + step.waitMs;
  };
  for (const s of state) if (isRunning(s.plan.pid, s.plan.comm)) next(s);
  for (;;) {
    const waiting = state.filter((s) => isRunning(s.plan.pid, s.plan.comm) && s.step >= 0);
    const pending = waiting.filter((s) => Date.now() < s.until || s.step + 1 < s.plan.steps.length);
    if (pending.length === 0) break;
    for (const s of pending) if (Date.now() >= s.until) next(s);
    sleepSync(50);
  }
  return state.map(({ plan: p, step }) => ({
    name: p.name,
    pid: p.pid,
    ok: !isRunning(p.pid, p.comm),
    signalled: step >= 0,
  }));
}

function sleepSync(ms: number) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
