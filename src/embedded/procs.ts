// Processes of the local services, told apart by what /proc says they are.
import { existsSync, readFileSync } from 'node:fs';

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
