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
  tokenId: string,
): Promise<Replayed> {
  return replayOf(await reads.findByIdempotencyKey(key), key, requestHash, tokenId);
}

/**
 * The answer to a key that made `existing`: the operation again for its own token and request;
 * 409 for another request, or for another token. Keys are one namespace, and two pipelines that
 * both used `chg-2042` got each other's operations: a scoped token one of a tenant outside its
 * scope, and an outcome that was not its own (a trial).
 */
export function replayOf(
  existing: OperationRow | null | undefined,
  key: string,
  requestHash: string,
  tokenId: string,
): Replayed {
  if (!existing) throw new Error(`idempotency key ${key} vanished`);
  if (existing.requestedBy !== tokenId)
    throw new ConflictError(
      'IDEMPOTENCY_KEY_REUSED',
      `This Idempotency-Key was used by another token for an operation of its own; a key replays only for the token that made it. Use a new key`,
      { idempotencyKey: key },
    );
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
