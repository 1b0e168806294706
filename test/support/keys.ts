// The Idempotency-Key format as a receiver sees it (see idempotencyKeyFor in src/modules/adapters/
// signing.ts): the tests check every key sent on the wire against it.
import type { DestructiveAction } from '../../src/modules/adapters/types.ts';

export const IDEMPOTENCY_KEY_PATTERN = /^bg1-(softDelete|hardDelete|restore)-[0-9a-f]{40}$/;
export const DESTRUCTIVE_ACTIONS: readonly DestructiveAction[] = ['softDelete', 'hardDelete', 'restore'];
