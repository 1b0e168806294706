// The reconciler re-derives queued work from the ledger, so nothing depends on Redis remembering:
// after a Redis restart, a lost job or a crash between a commit and its effects, every running
// wave gets its unfinished chunks queued again (deterministic job IDs make this idempotent),
// finished waves get settled, wave deadlines, bakes and rollbacks get their job back.
import { CHUNK_SIZE } from './queues.ts';
import type { WorkerDeps } from './chunk.ts';
import { nextBakeRound } from './control.ts';
import { DEFAULT_ROLLOUT } from '../operations/policy.ts';

export async function reconcileOnce(deps: WorkerDeps): Promise<{ chunks: number; control: number }> {
  const ops = await deps.pool.query<{
    id: string;
    state: string;
    current_wave: number | null;
    version: number;
    from_seq: number | null;
    to_seq: number | null;
    bake_until: Date | null;
    bake_seconds: number | null;
    wave_deadline: Date | null;
  }>(
    `SELECT o.id, o.state, o.current_wave, o.version, w.from_seq, w.to_seq, o.bake_until, (o.rollout->>'bakeSeconds')::int AS bake_seconds, o.wave_deadline FROM operations o
     LEFT JOIN operation_waves w ON w.operation_id = o.id AND w.wave = o.current_wave
     WHERE o.state IN ('running', 'baking', 'rolling_back')`,
  );
  let chunks = 0;
  let control = 0;
  for (const op of ops.rows) {
    const epoch = op.version;
    if (op.state === 'running' && op.current_wave !== null && op.from_seq !== null && op.to_seq !== null) {
      // The wave's deadline job (same job ID as the one the wave start queued: a no-op while it
      // exists). Without it a wave whose deadline job Redis lost would never miss its deadline.
      if (op.wave_deadline) {
        await deps.engine.queues.enqueueControl(
          { kind: 'deadline', opId: op.id, epoch, wave: op.current_wave },
          Math.max(0, op.wave_deadline.getTime() - Date.now()),
        );
        control++;
      }
      const open = await deps.pool.query<{ k: number }>(
        `SELECT DISTINCT (seq - $2) / $4 AS k FROM operation_items
         WHERE operation_id = $1 AND seq >= $2 AND seq < $3 AND state IN ('pending', 'claimed') ORDER BY 1`,
        [op.id, op.from_seq, op.to_seq, CHUNK_SIZE],
      );
      if (open.rows.length === 0) {
        await deps.engine.queues.enqueueControl({ kind: 'settle', opId: op.id, epoch, wave: op.current_wave });
        control++;
      } else {
        // Chunk boundaries are aligned to the wave start, exactly as the first enqueue made them.
        await deps.engine.queues.enqueueChunks(
          open.rows.map(({ k }) => {
            const from = op.from_seq! + k * CHUNK_SIZE;
            return { opId: op.id, epoch, wave: op.current_wave!, from, to: Math.min(op.to_seq!, from + CHUNK_SIZE) };
          }),
        );
        chunks += open.rows.length;
      }
    } else if (op.state === 'baking' && op.current_wave !== null) {
      // The round the bake's own chain has waiting (same job ID: a no-op while that job exists).
      const next = nextBakeRound(op.bake_until, op.bake_seconds ?? DEFAULT_ROLLOUT.bakeSeconds, Date.now());
      await deps.engine.queues.enqueueControl(
        { kind: 'bake', opId: op.id, epoch, wave: op.current_wave, round: next.round },
        next.delayMs,
      );
      control++;
    } else if (op.state === 'rolling_back') {
      await deps.engine.queues.enqueueControl({ kind: 'rollback', opId: op.id, epoch });
      control++;
    }
  }
  return { chunks, control };
}
