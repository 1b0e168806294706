// Protection marked while a chunk's calls are out. A chunk asks the registry once, while it reads
// its snapshots (chunk-execute.ts refuseProtected), and then sends up to CHUNK_SIZE calls: against
// a downstream answering in 150 ms at concurrency 1, a resource marked protected 2 s after the
// start was deleted 17 s later, and the operation read `completed` (a trial). The registry adapter
// checks in its own statement (registry-apply.ts DeleteGuard); an HTTP call has nothing like it.
// So each call first looks at the protection of the part's items as it was at most RECHECK_MS
// ago (one registry query for all items not sent yet, shared by the calls that wait for it): an
// item protected since is not sent, and fails for good with nothing changed.
import type { AdapterItem, ApplyOptions, DestructiveAction, ItemResult, TargetAdapter } from '../adapters/index.ts';
import { DESCENDANT_PROTECTED_SINCE_PLAN } from '../adapters/registry-apply.ts';

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

/** How old the protection a call is checked against may be: the window a mark can miss. */
export const RECHECK_MS = 500;

/**
 * `inner` whose deletes look at `check` (protected-now.ts, the operation's approved tenants bound)
 * before each call. `items` are every item this adapter will be asked to delete, and `watched` the
 * descendants of each whose protection stops it too (what its delete takes that no registry
 * statement guards).
 */
export function recheckingProtection(
  inner: TargetAdapter,
  items: AdapterItem[],
  watched: (i: AdapterItem) => AdapterItem[],
  check: (ids: string[]) => Promise<Map<string, string>>,
  clock: () => number = Date.now,
): TargetAdapter {
  const started = new Set<string>();
  let known: { at: number; now: Map<string, string> } | null = null;
  let asking: Promise<Map<string, string>> | null = null;
  const current = (): Promise<Map<string, string>> => {
    if (known && clock() - known.at < RECHECK_MS) return Promise.resolve(known.now);
    if (asking) return asking;
    const at = clock();
    const ids = items
      .filter((i) => !started.has(i.resourceId))
      .flatMap((i) => [i.resourceId, ...watched(i).map((d) => d.resourceId)]);
    asking = check(ids).then(
      (now) => ((known = { at, now }), (asking = null), now),
      (err: unknown) => {
        asking = null;
        throw err;
      },
    );
    return asking;
  };
  return {
    ...inner,
    async apply(action: DestructiveAction, batch: AdapterItem[], opts: ApplyOptions): Promise<ItemResult[]> {
      if (action === 'restore') return inner.apply(action, batch, opts);
      const now = await current();
      const why = batch.map((i) => protectionRefusal(now, i.resourceId, watched(i)));
      for (const i of batch) started.add(i.resourceId);
      const go = batch.filter((_, k) => why[k] === undefined);
      const sent = go.length ? await inner.apply(action, go, opts) : [];
      let next = 0;
      return batch.map((_, k): ItemResult =>
        why[k] === undefined ? sent[next++]! : { ok: false, permanent: true, unapplied: true, error: why[k] },
      );
    },
  };
}
