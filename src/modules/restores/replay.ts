// Idempotency-Key replays of operations planned from a scope (restores and purges): the same key
// with the same request gives back the operation it made; with another request, 409.
import { ConflictError } from '../../lib/errors.ts';
import type { OperationReads, OperationRow } from '../operations/repository.ts';

export interface Replayed {
  kind: 'planned' | 'rejected';
  operation: OperationRow;
  replayed: true;
}

export async function replayByKey(
  reads: Pick<OperationReads, 'findByIdempotencyKey'>,
  key: string,
  requestHash: string,
): Promise<Replayed> {
  const existing = await reads.findByIdempotencyKey(key);
  if (!existing) throw new Error(`idempotency key ${key} vanished`);
  if (existing.requestHash !== requestHash) throw keyReused(key, existing);
  return { kind: existing.state === 'rejected' ? 'rejected' : 'planned', operation: existing, replayed: true };
}

/**
 * 409 for a key that made an operation from another request body: names the operation and its
 * state, the same for deletes, restores and purges. After a rejection the client usually resends
 * a corrected list under the same key: it is told that a rejected operation never runs.
 */
export function keyReused(key: string, existing: Pick<OperationRow, 'id' | 'state'>): ConflictError {
  if (existing.state === 'rejected')
    return new ConflictError(
      'IDEMPOTENCY_KEY_REUSED',
      `This Idempotency-Key belongs to operation ${existing.id}, which was rejected (see its report); a rejected operation never runs. Submit the corrected list with a new Idempotency-Key.`,
      {
        idempotencyKey: key,
        operationId: existing.id,
        state: existing.state,
        reportUrl: `/v1/operations/${existing.id}/report`,
      },
    );
  return new ConflictError(
    'IDEMPOTENCY_KEY_REUSED',
    `This Idempotency-Key belongs to operation ${existing.id} (${existing.state}), submitted with a different request body; use a new key for a different request`,
    { idempotencyKey: key, operationId: existing.id, state: existing.state },
  );
}
