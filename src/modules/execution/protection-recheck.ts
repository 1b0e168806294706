// Protection marked while a chunk's calls are out. A chunk asks the registry once, while it reads
// its snapshots (chunk-execute.ts refuseProtected), and then sends up to CHUNK_SIZE calls: against
// a downstream answering in 150 ms at concurrency 1, a resource marked protected 2 s after the
// start was deleted 17 s later, and the operation read `completed` (a trial). The registry adapter
// checks in its own statement (registry-apply.ts DeleteGuard); an HTTP call has nothing like it.
// So each call first looks at the protection of the part's items as it was at most RECHECK_MS
// ago (one registry query for all items not sent yet, shared by the calls that wait for it): an
// item protected since is not sent, and fails for good with nothing changed.
// Reading every item's row again per look cost the efficiency bench's PostgreSQL ~100 µs of its
// ~270 µs per item (`npm run bench -- statements`, BENCH_STATEMENTS_OF=efficiency), while protection
// almost never changes. So a look first asks whether any statement that may change protection
// committed since the last full look (protected-now.ts protectionChangedSince: one index probe) and
// reads the rows again only then.
import type { AdapterItem, ApplyOptions, DestructiveAction, ItemResult, TargetAdapter } from '../adapters/index.ts';
import { DESCENDANT_PROTECTED_SINCE_PLAN } from '../adapters/registry-refusals.ts';
import type { ProtectionLook } from './protected-now.ts';

/**
 * Why item `id` may not be deleted, given what is protected `now` (protected-now.ts): its own
 * reason, or the first of `kids` (descendants its delete takes unguarded) that is protected.
 */
export function protectionRefusal(
  now: Map<string, string>,
  id: string,
  kids: readonly { resourceId: string }[],
): string | undefined {
  const via = now.has(id) ? undefined : kids.find((d) => now.has(d.resourceId));
  return now.get(id) ?? (via && DESCENDANT_PROTECTED_SINCE_PLAN(id, via.resourceId));
}

/**
 * How old the protection a call is checked against may be: the window a mark can miss. It was
 * 500 ms while every look read the rows; a trial then saw a resource marked 189 ms before its call
 * deleted. A look is one index probe now unless protection changed, so it is asked 5 times as often.
 */
export const RECHECK_MS = 100;
/**
 * A full look older than this is read again rather than compared with the changes since: far inside
 * the day the changes are kept (protected-now.ts CHANGE_LOGS_KEPT).
 */
export const FULL_LOOK_MAX_MS = 10 * 60_000;

/** A look taken before the calls (the chunk's refuseProtected, or its plan's snapshot), and when. */
export interface FirstLook {
  at: number;
  look: ProtectionLook;
}

export interface ProtectionChecks {
  /** A full look at these resources (protected-now.ts protectedNow, the approved tenants bound). */
  look(ids: string[]): Promise<ProtectionLook>;
  /** Whether protection may have changed since the look that saw `seen`; absent: always look again. */
  changedSince?(seen: string): Promise<boolean>;
  /** The look the chunk took of these items while it read their snapshots (refuseProtected), and when. */
  first?: FirstLook;
}

/**
 * `inner` whose deletes look at protection (`checks`) before each call. `items` are every item this
 * adapter will be asked to delete, and `watched` the descendants of each whose protection stops it
 * too (what its delete takes that no registry statement guards).
 */
export function recheckingProtection(
  inner: TargetAdapter,
  items: AdapterItem[],
  watched: (i: AdapterItem) => AdapterItem[],
  checks: ProtectionChecks,
  clock: () => number = Date.now,
): TargetAdapter {
  const started = new Set<string>();
  // `at`: when what `now` says was last known to hold; `full`: when its rows were last read.
  let known: { at: number; full: number; now: Map<string, string>; seen: string } | null = checks.first
    ? { at: checks.first.at, full: checks.first.at, now: checks.first.look.refusals, seen: checks.first.look.seen }
    : null;
  let asking: Promise<Map<string, string>> | null = null;
  const lookAgain = async (at: number): Promise<Map<string, string>> => {
    const prior = known;
    if (
      prior &&
      checks.changedSince &&
      at - prior.full < FULL_LOOK_MAX_MS &&
      !(await checks.changedSince(prior.seen))
    ) {
      known = { ...prior, at };
      return prior.now;
    }
    const ids = items
      .filter((i) => !started.has(i.resourceId))
      .flatMap((i) => [i.resourceId, ...watched(i).map((d) => d.resourceId)]);
    const look = await checks.look(ids);
    known = { at, full: at, now: look.refusals, seen: look.seen };
    return look.refusals;
  };
  const current = (): Promise<Map<string, string>> => {
    if (known && clock() - known.at < RECHECK_MS) return Promise.resolve(known.now);
    if (asking) return asking;
    asking = lookAgain(clock()).finally(() => (asking = null));
    return asking;
  };
  return {
    ...inner,
    async apply(action: DestructiveAction, batch: AdapterItem[], opts: ApplyOptions): Promise<ItemResult[]> {
      if (action === 'restore') return inner.apply(action, batch, opts);
      const now = await current();
      const why = batch.map((i) => protectionRefusal(now, i.resourceId, watched(i)));
      for (const i of batch) started.add(i.resourceId);
      return applyAllBut(inner, action, batch, opts, why);
    },
  };
}

/**
 * `inner.apply` for the items of `batch` with no refusal in `why` (by position); each refused one
 * fails for good with its refusal and nothing sent. Results come back in `batch`'s order.
 */
export async function applyAllBut(
  inner: TargetAdapter,
  action: DestructiveAction,
  batch: AdapterItem[],
  opts: ApplyOptions,
  why: (string | undefined)[],
): Promise<ItemResult[]> {
  const go = batch.filter((_, k) => why[k] === undefined);
  const sent = go.length ? await inner.apply(action, go, opts) : [];
  let next = 0;
  return batch.map((_, k): ItemResult => {
    const error = why[k];
    return error === undefined ? sent[next++]! : { ok: false, permanent: true, unapplied: true, error };
  });
}
