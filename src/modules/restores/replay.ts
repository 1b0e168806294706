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
  if (existing.requestHash !== requestHash)
    throw new ConflictError('IDEMPOTENCY_KEY_REUSED', 'This Idempotency-Key was used with a different request body', {
      idempotencyKey: key,
      operationId: existing.id,
    });
  return { kind: existing.state === 'rejected' ? 'rejected' : 'planned', operation: existing, replayed: true };
}
