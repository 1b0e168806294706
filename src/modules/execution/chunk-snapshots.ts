// The snapshot phase of a chunk: read what every claimed item looks like — and every descendant
// its delete would take (a cascade), each through its own type's adapter — before anything
// destructive. No snapshot, no call: an item whose own snapshot or any descendant's cannot be
// read fails here, saying which and why, and nothing of it is stored or marked.
import { AppError } from '../../lib/errors.ts';
import { isSkipped, type AdapterItem, type ItemResult, type TargetAdapter } from '../adapters/index.ts';
import type { AdapterCache } from './adapters-cache.ts';
import type { ClaimedItem, Descendant, Outcome, Snap } from './ledger.ts';

export interface SnapshotPhase {
  snaps: Snap[];
  /** Items that may not be called: failed, with the reason. */
  failures: Outcome[];
}

interface Context {
  operationId: string;
  adapter: TargetAdapter;
  targetType: string;
  adapters: Pick<AdapterCache, 'get'>;
  concurrency: number;
}

const asItem = (operationId: string, type: string, x: { resourceId: string; tenantId: string }): AdapterItem => ({
  operationId,
  resourceId: x.resourceId,
  tenantId: x.tenantId,
  type,
});

const failedOf = (r: ItemResult) => (r.ok ? null : { error: r.error, permanent: !isSkipped(r) && r.permanent });

/** Reads descendants' snapshots type by type; a type whose adapter cannot be built fails its reads. */
async function readDescendants(c: Context, kids: { d: Descendant }[]): Promise<ItemResult[]> {
  const out = new Array<ItemResult>(kids.length);
  const types = [...new Set(kids.map((k) => k.d.type))];
  for (const type of types) {
    const idx = kids.flatMap((k, i) => (k.d.type === type ? [i] : []));
    const got = await c.adapters.get(type).catch((err: unknown) => {
      if (err instanceof AppError) return err; // will not fix itself: fail, saying why
      throw err;
    });
    const res: ItemResult[] =
      got instanceof AppError
        ? idx.map(() => ({ ok: false, permanent: true, error: `adapter for type ${type} unavailable: ${got.message}` }))
        : await got.adapter.snapshot(
            idx.map((i) => asItem(c.operationId, type, kids[i]!.d)),
            { concurrency: c.concurrency },
          );
    idx.forEach((i, k) => (out[i] = res[k]!));
  }
  return out;
}

export async function takeSnapshots(c: Context, items: ClaimedItem[]): Promise<SnapshotPhase> {
  const own = items.filter((i) => i.snapshotId === null);
  const ownRes = own.length
    ? await c.adapter.snapshot(
        own.map((i) => asItem(c.operationId, c.targetType, i)),
        { concurrency: c.concurrency },
      )
    : [];
  const kids = items.flatMap((item) => item.descendants.filter((d) => d.snapshotId === null).map((d) => ({ item, d })));
  const kidRes = kids.length ? await readDescendants(c, kids) : [];

  const problem = new Map<number, { error: string; permanent: boolean }>();
  own.forEach((i, k) => {
    const f = failedOf(ownRes[k]!);
    if (f) problem.set(i.seq, { error: `snapshot failed: ${f.error}`, permanent: f.permanent });
  });
  kids.forEach(({ item, d }, k) => {
    const f = failedOf(kidRes[k]!);
    if (f && !problem.has(item.seq))
      problem.set(item.seq, {
        error: `snapshot of descendant ${d.resourceId} (${d.type}) failed: ${f.error}`,
        permanent: f.permanent,
      });
  });
  const snaps: Snap[] = [];
  own.forEach((i, k) => {
    const r = ownRes[k]!;
    if (r.ok && !problem.has(i.seq))
      snaps.push({ seq: i.seq, parentSeq: null, resourceId: i.resourceId, tenantId: i.tenantId, data: r.data });
  });
  kids.forEach(({ item, d }, k) => {
    const r = kidRes[k]!;
    if (r.ok && !problem.has(item.seq))
      snaps.push({ seq: d.seq, parentSeq: item.seq, resourceId: d.resourceId, tenantId: d.tenantId, data: r.data });
  });
  const failures = [...problem].map(([seq, p]): Outcome => ({
    seq,
    state: 'failed',
    error: p.error.slice(0, 500),
    permanent: p.permanent,
  }));
  return { snaps, failures };
}
