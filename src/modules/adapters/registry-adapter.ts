// Registry adapter: acts on resources kept in Blastgate's own `resources` table.
//
// Set-based: one statement per chunk of items (arrays through unnest / = ANY, one parameter each),
// never one query per ID. A chunk is one destructive call, so shouldContinue() is checked before
// each chunk; the halt overshoot is at most one chunk.
//
// Every statement matches on (id, type, tenant) together, not on id alone: the registry is where
// "wrong-type IDs never run" (promise 1) would be broken last, so a row whose type or tenant does
// not match the item is a permanent failure, never acted on.
import type pg from 'pg';
import {
  SKIPPED,
  type AdapterItem,
  type ApplyOptions,
  type DestructiveAction,
  type ItemResult,
  type ProbeResult,
  type TargetAdapter,
} from './types.ts';

// Rows locked and updated by one statement: big enough to stay set-based and fast, small enough
// that row locks are held briefly and a halt stops within one chunk.
const CHUNK = 5_000;

type Pool = Pick<pg.Pool, 'query'>;
type State = 'active' | 'soft_deleted' | 'purged';

/** What a snapshot of a registry resource holds; restore reads `state` and `deletedAt` back. */
export interface RegistrySnapshot {
  id: string;
  type: string;
  tenantId: string;
  parentId: string | null;
  state: State;
  protected: boolean;
  deletedAt: string | null;
  updatedAt: string;
}

interface ActionSpec {
  /** States the action changes; from any other state it changes nothing. */
  from: State[];
  /** Already in this state before the call: the action's outcome holds, so it is ok (idempotent). */
  done: (before: string, target: string) => boolean;
  deletedAt: string;
}

const ACTIONS: Record<DestructiveAction, ActionSpec> = {
  softDelete: { from: ['active'], done: (b) => b === 'soft_deleted', deletedAt: 'now()' },
  hardDelete: {
    from: ['active', 'soft_deleted'],
    done: (b) => b === 'purged',
    deletedAt: 'coalesce(r.deleted_at, now())',
  },
  // Only from soft_deleted: a purged resource is gone downstream; "restoring" it would be a lie.
  restore: { from: ['soft_deleted'], done: (b, target) => b === target, deletedAt: 't.to_deleted_at' },
};

const TARGET_STATE: Record<Exclude<DestructiveAction, 'restore'>, State> = {
  softDelete: 'soft_deleted',
  hardDelete: 'purged',
};

// Locks the matching rows first (in id order, so two overlapping batches cannot deadlock) so that
// `before` is the committed state the UPDATE acts on; the final SELECT reports every input item,
// including those that matched nothing.
const applySql = (deletedAt: string) => `
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
    AS i(id, type, tenant_id, to_state, to_deleted_at)
), target AS (
  SELECT r.id, r.state, i.to_state, i.to_deleted_at
  FROM resources r JOIN input i ON i.id = r.id AND i.type = r.type AND i.tenant_id = r.tenant_id
  ORDER BY r.id
  FOR UPDATE OF r
), changed AS (
  UPDATE resources r SET state = t.to_state, deleted_at = ${deletedAt}, updated_at = now()
  FROM target t WHERE r.id = t.id AND t.state = ANY($6::text[])
  RETURNING r.id
)
SELECT i.id, t.state AS before, (c.id IS NOT NULL) AS changed, r.type AS actual_type, r.tenant_id AS actual_tenant
FROM input i
LEFT JOIN target t ON t.id = i.id
LEFT JOIN changed c ON c.id = i.id
LEFT JOIN resources r ON r.id = i.id AND t.id IS NULL`;

interface ApplyRow {
  id: string;
  before: string | null;
  changed: boolean;
  actual_type: string | null;
  actual_tenant: string | null;
}
interface ResourceRow {
  id: string;
  type: string;
  tenant_id: string;
  parent_id: string | null;
  state: State;
  protected: boolean;
  deleted_at: Date | null;
  updated_at: Date;
}

function chunks<T>(items: readonly T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK));
  return out;
}

const mismatch = (item: AdapterItem, actual: { type: string | null; tenant: string | null }): ItemResult =>
  actual.type === null
    ? { ok: false, permanent: true, error: `resource ${item.resourceId} is not in the registry` }
    : {
        ok: false,
        permanent: true,
        error: `registry has ${item.resourceId} as type ${actual.type} of tenant ${actual.tenant}, not type ${item.type} of tenant ${item.tenantId}`,
      };

/**
 * A statement that failed (connection lost, lock timeout) fails its chunk as retryable, like a 5xx
 * from an HTTP system: one statement is atomic, and the caller decides about retries uniformly.
 */
const chunkFailed =
  (part: AdapterItem[]) =>
  (err: unknown): ItemResult[] =>
    part.map(() => ({ ok: false, permanent: false, error: `registry statement failed: ${(err as Error).message}` }));

/** The state a restore returns to: the snapshot's, when it is a live state; else active. */
function restoreTarget(snapshot: unknown): { state: State; deletedAt: string | null } {
  const s = snapshot as Partial<RegistrySnapshot> | undefined;
  if (s?.state === 'soft_deleted') return { state: 'soft_deleted', deletedAt: s.deletedAt ?? null };
  return { state: 'active', deletedAt: null };
}

export function createRegistryAdapter(pool: Pool): TargetAdapter {
  async function applyChunk(
    action: DestructiveAction,
    items: AdapterItem[],
    opts: ApplyOptions,
  ): Promise<ItemResult[]> {
    const spec = ACTIONS[action];
    const targets = items.map((i) =>
      action === 'restore'
        ? restoreTarget(opts.snapshots?.get(i.resourceId))
        : { state: TARGET_STATE[action], deletedAt: null },
    );
    const { rows } = await pool.query<ApplyRow>(applySql(spec.deletedAt), [
      items.map((i) => i.resourceId),
      items.map((i) => i.type),
      items.map((i) => i.tenantId),
      targets.map((t) => t.state),
      targets.map((t) => t.deletedAt),
      spec.from,
    ]);
    const byId = new Map(rows.map((r) => [r.id, r]));
    return items.map((item, k): ItemResult => {
      const row = byId.get(item.resourceId);
      if (!row || row.before === null)
        return mismatch(item, { type: row?.actual_type ?? null, tenant: row?.actual_tenant ?? null });
      if (row.changed || spec.done(row.before, targets[k]!.state)) return { ok: true };
      return { ok: false, permanent: true, error: `cannot ${action} ${item.resourceId}: it is ${row.before}` };
    });
  }

  return {
    kind: 'registry',

    async snapshot(items) {
      const out: ItemResult[] = [];
      for (const part of chunks(items)) {
        let rows: ResourceRow[];
        try {
          ({ rows } = await pool.query<ResourceRow>(
            'SELECT id, type, tenant_id, parent_id, state, protected, deleted_at, updated_at FROM resources WHERE id = ANY($1::text[])',
            [part.map((i) => i.resourceId)],
          ));
        } catch (err) {
          out.push(...chunkFailed(part)(err));
          continue;
        }
        const byId = new Map(rows.map((r) => [r.id, r]));
        for (const item of part) {
          const r = byId.get(item.resourceId);
          if (!r || r.type !== item.type || r.tenant_id !== item.tenantId) {
            out.push(mismatch(item, { type: r?.type ?? null, tenant: r?.tenant_id ?? null }));
            continue;
          }
          const data: RegistrySnapshot = {
            id: r.id,
            type: r.type,
            tenantId: r.tenant_id,
            parentId: r.parent_id,
            state: r.state,
            protected: r.protected,
            deletedAt: r.deleted_at?.toISOString() ?? null,
            updatedAt: r.updated_at.toISOString(),
          };
          out.push({ ok: true, data });
        }
      }
      return out;
    },

    async apply(action, items, opts) {
      const out: ItemResult[] = [];
      let halted = false;
      for (const part of chunks(items)) {
        halted ||= !opts.shouldContinue();
        if (halted) out.push(...part.map(() => SKIPPED));
        else out.push(...(await applyChunk(action, part, opts).catch(chunkFailed(part))));
      }
      return out;
    },

    async probe(tenantId, opts): Promise<ProbeResult> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), opts.timeoutMs);
      });
      try {
        const res = await Promise.race([pool.query('SELECT 1 FROM tenants WHERE id = $1', [tenantId]), timeout]);
        if (res === 'timeout')
          return { result: 'timeout', detail: `database did not answer within ${opts.timeoutMs} ms` };
        return res.rowCount
          ? { result: 'healthy' }
          : { result: 'error', detail: `tenant ${tenantId} is not in the registry` };
      } catch (err) {
        return { result: 'error', detail: (err as Error).message };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
