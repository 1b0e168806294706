// CPU work over a whole chunk (500 items: canonical JSON, hashes, key generation, encryption) runs
// on the event loop that also answers the chunk's calls in flight. Done in one go it holds every
// response that arrives meanwhile for its whole duration (~15 ms per 500 snapshots, measured),
// which is added to the time each of those calls holds a slot of the operation's budget. In slices,
// with a turn of the event loop between them, responses wait at most for one slice.

import { setImmediate as nextTurn } from 'node:timers/promises';

/** Items per slice: a few hundred microseconds to a couple of milliseconds of work each. */
export const SLICE = 64;

/**
 * `fn` applied to `items` slice by slice (`fn` gets each slice and its offset and returns one result
 * per item), yielding to the event loop between slices; results in input order.
 */
export async function inSlices<T, R>(
  items: readonly T[],
  fn: (slice: readonly T[], offset: number) => R[],
  size = SLICE,
): Promise<R[]> {
  if (items.length <= size) return fn(items, 0);
  const out: R[] = [];
  for (let at = 0; at < items.length; at += size) {
    if (at > 0) await nextTurn();
    out.push(...fn(items.slice(at, at + size), at));
  }
  return out;
}
