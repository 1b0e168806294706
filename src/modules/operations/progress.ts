// The progress of an operation as both views give it: GET /v1/operations (one statement per page,
// list.ts) and GET /v1/operations/{id} (from the counters and moves its read already has). One
// shape and one rule, so a reader who polls either finds the same numbers under the same name.
import { Type, type Static } from '@fastify/type-provider-typebox';
import { shownClass, type WaveCounter, type WaveMove } from '../execution/wave-moves.ts';

export const Progress = Type.Object(
  {
    items: Type.Integer({ description: 'Submitted items in the waves (a cascade takes its descendants with each)' }),
    done: Type.Integer({
      description:
        'Executed successfully by the forward run; a rollback does not lower it (state says rolled_back; GET /v1/operations/{id} counts what was restored)',
    }),
    failed: Type.Integer({ description: 'Failed' }),
    pending: Type.Integer({
      description:
        'Not executed (items - done - failed): yet, while the operation runs; never, once it ended without running them (rolled_back, cancelled, failed): nothing was sent for them',
    }),
    restoring: Type.Integer({
      description:
        'Being restored by a rollback, a failed restore the running rollback will try again, or an item the restore drill holds',
    }),
    restored: Type.Integer({
      description: "Restored by rollbacks of this operation (a restore operation's own restores are its done)",
    }),
    restoreFailed: Type.Integer({
      description:
        'A rollback could not restore it (still deleted): rollback_incomplete says so; a new rollback retries',
    }),
  },
  {
    description:
      "Execution progress over every wave (submitted items; a cascade's descendants go with their parent): " +
      'the forward run from the wave counters, rollbacks from the moves their statements record',
  },
);

export type ProgressView = Static<typeof Progress>;

/**
 * Progress from the wave counters (the forward run) and the moves of rollbacks (restore_retry by
 * the one rule, shownClass): what list.ts computes in SQL for a page.
 */
export function progressFrom(
  waves: readonly WaveCounter[],
  moves: readonly WaveMove[],
  rollbackRuns: boolean,
): ProgressView {
  const p = { items: 0, done: 0, failed: 0, pending: 0, restoring: 0, restored: 0, restoreFailed: 0 };
  for (const w of waves) {
    p.items += w.items;
    p.done += w.done;
    p.failed += w.failed;
  }
  p.pending = p.items - p.done - p.failed;
  for (const m of moves) {
    const c = shownClass(m.class, rollbackRuns);
    if (c === 'restoring') p.restoring += m.n;
    else if (c === 'restored') p.restored += m.n;
    else if (c === 'restore_failed') p.restoreFailed += m.n;
  }
  return p;
}
