// The Idempotency-Key format as a receiver sees it (see idempotencyKeyFor in src/modules/adapters/
// signing.ts): the tests check every key sent on the wire against it.
import type { DestructiveAction } from '../../src/modules/adapters/types.ts';

export const IDEMPOTENCY_KEY_PATTERN = /^bg1-(softDelete|hardDelete|restore)-[0-9a-f]{40}$/;
export const DESTRUCTIVE_ACTIONS: readonly DestructiveAction[] = ['softDelete', 'hardDelete', 'restore'];

/**
 * The snapshot master key of every test process (API, in-process and child workers): they share
 * each test database, whose snapshots must be readable by all of them. base64 of 32 bytes.
 */
export const TEST_SNAPSHOT_KEY = 'dGVzdC1zbmFwc2hvdC1tYXN0ZXIta2V5LTMyLWJ5dGU=';
export const TEST_SNAPSHOT_KEY_BYTES = Buffer.from(TEST_SNAPSHOT_KEY, 'base64');
