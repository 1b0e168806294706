// Which registry states an operation of each kind acts on. A delete takes active resources (a
// soft-deleted one is already deleted); a compliance erasure also takes soft-deleted ones, within
// their retention window: erasing what a delete left restorable is the point of it.
import type { OperationKind } from '../operations/lifecycle-types.ts';

export const ACTIVE_ONLY: readonly string[] = ['active'];
const ERASABLE: readonly string[] = ['active', 'soft_deleted'];

export const statesActedOn = (kind: OperationKind): readonly string[] => (kind === 'erase' ? ERASABLE : ACTIVE_ONLY);
