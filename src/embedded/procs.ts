// Processes of the local services, told apart by what /proc says they are, and what they wrote to
// their logs during one start.
import { existsSync, readFileSync, statSync } from 'node:fs';

/**
 * Whether `pid` is a live process named `comm` (when /proc can tell). A zombie counts as gone: it
 * has exited and only waits for its parent to collect it. Checking the name keeps a stale pid file
 * (after a reboot the number may belong to anything) from making us signal a stranger.
 */
export function isRunning(pid: number, comm: string): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return existsSync('/proc/self/stat') ? false : true;
  }
  const close = stat.lastIndexOf(')');
  const state = stat.charAt(close + 2);
  if (state === 'Z' || state === 'X') return false;
  return stat.slice(stat.indexOf('(') + 1, close).startsWith(comm.slice(0, 15));
}

/**
 * When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or undefined where /proc
 * cannot tell: with the pid it names one process for good, where a pid alone is reused.
 */
export function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the name (which may hold spaces), from field 3 (state) on.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** A command line an operator can paste into a POSIX shell: each argument quoted when it needs it. */
export function shellCommand(args: string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** The size of a file, 0 when there is none. */
export function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** The lines of a file from byte `from` on (what a process appended to its log since). */
export function linesSince(file: string, from: number): string[] {
  let text: Buffer;
  try {
    text = readFileSync(file);
  } catch {
    return [];
  }
  return text
    .subarray(from)
    .toString('utf8')
    .split('\n')
    .map((l) => l.trimEnd())
    .filter(Boolean);
}
