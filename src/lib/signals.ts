// Counting shutdown signals. A Ctrl-C in a terminal (or a supervisor's SIGTERM to a process group)
// reaches every process of the group: Blastgate gets it directly and again from `npm start` /
// `npm run worker`, which forwards it to its child a few milliseconds later. Counted as a second
// signal, that one press exited at once and drained nothing (two new-user trials). A repeat within
// SAME_PRESS_MS is the same press; a later one is the operator's "exit now".
export const SAME_PRESS_MS = 1_000;

/** The signals a graceful shutdown is started by (close-with-grace handles the others). */
export const SHUTDOWN_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export function signalCounter(
  first: (signal: NodeJS.Signals) => void,
  again: (signal: NodeJS.Signals) => void,
  now: () => number = Date.now,
): (signal: NodeJS.Signals) => void {
  let firstAt: number | undefined;
  return (signal) => {
    const t = now();
    if (firstAt === undefined) {
      firstAt = t;
      first(signal);
    } else if (t - firstAt >= SAME_PRESS_MS) again(signal);
  };
}
