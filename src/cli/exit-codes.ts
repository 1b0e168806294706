// Exit codes of the blastgate CLI (the README's table): a pipeline branches on them, so each
// outcome has one, and every way of waiting maps the operation's state the same way.

export const EXIT = {
  ok: 0,
  error: 1,
  usage: 2,
  rejected: 10,
  stopped: 11,
  paused: 12,
  timedOut: 13,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** States after which nothing more happens without a human (or at all). */
const STOPPED_STATES = new Set([
  'halted',
  'rolled_back',
  'rollback_incomplete',
  'completed_with_failures',
  'cancelled',
  'failed',
  'expired',
]);

/** States in which an operation sends nothing more of its forward run (a rollback may still come). */
const OVER_STATES = new Set([...STOPPED_STATES, 'completed'].filter((s) => s !== 'halted'));

/**
 * A ledger state as a count of an operation in `opState` says it: the items of an operation that
 * ended without running them are `pending` in its ledger, and "pending 11" on a rolled-back
 * operation read as work still queued (a trial). Nothing was sent for them, and nothing will be.
 */
export const countWord = (itemState: string, opState: string) =>
  itemState === 'pending' && OVER_STATES.has(opState) ? 'never run' : itemState;

/**
 * What waiting on an operation in `state` ends with: an exit code, or null to keep waiting
 * (planned, approved, running, baking, rolling_back).
 */
export function exitForState(state: string): ExitCode | null {
  if (state === 'completed') return EXIT.ok;
  if (state === 'rejected') return EXIT.rejected;
  if (state === 'paused') return EXIT.paused;
  if (STOPPED_STATES.has(state)) return EXIT.stopped;
  return null;
}

/**
 * A 422 that only a flag's value can cause: the same command cannot succeed again (exit 2). A type
 * that is not declared is --type's typo (a trial: exit 1, beside exit 2 for every other typo).
 */
export const byFlag = (code: string | undefined) => code === 'UNKNOWN_TARGET_TYPE';

/** An error the CLI reports and exits with: `code` is the server's error code when there is one. */
export class CliError extends Error {
  /** The server's requestId of a failed answer: what its log is searched by (shown for a 5xx). */
  requestId?: string;
  /** A rejected restore or purge of a tenant or an operation: its IDs came from the scope, not a list. */
  fromScope?: boolean;

  constructor(
    readonly exitCode: ExitCode,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly status?: number,
    /** A dry run's rejection: what records it with its report (default: `blastgate submit`, for `plan`). */
    readonly recordWith?: string,
  ) {
    super(message);
  }
}

export const usageError = (message: string, details?: unknown) => new CliError(EXIT.usage, 'USAGE', message, details);
