// How long bringing back what a plan would delete is expected to take, known before anything is
// deleted (the April 2022 deletes took 23 minutes; the restores took up to 14 days). Rollbacks
// measure restore throughput per resource type and adapter kind; a plan divides its items by it,
// or by a conservative default for a type whose restores were never measured.
import { Type, type Static } from '@fastify/type-provider-typebox';
import type { Queryable } from '../../lib/sql.ts';

/**
 * Restore items per second assumed before any measurement, per adapter kind: well under what the
 * registry adapter does on a small server (thousands a second, one statement per batch), and what
 * an HTTP downstream taking ~0.8 s per restore would manage at the default concurrency of 16 —
 * slow on purpose, so that an unmeasured estimate errs towards "this will take a while".
 */
export const DEFAULT_RESTORE_ITEMS_PER_SECOND: Record<string, number> = { registry: 500, http: 20 };
/** An adapter kind this file does not know yet gets the slowest default. */
const FALLBACK_ITEMS_PER_SECOND = Math.min(...Object.values(DEFAULT_RESTORE_ITEMS_PER_SECOND));
/**
 * Each new batch multiplies the sums so far by this before adding itself: recent restores weigh
 * most, because a downstream's speed changes (after ~50 batches the old ones hardly count).
 */
export const THROUGHPUT_DECAY = 0.9;

const Basis = Type.Union([Type.Literal('measured'), Type.Literal('default')], {
  description:
    'measured: from the restore throughput of earlier rollbacks of this type with its current adapter kind; default: never measured, a conservative default (registry 500 items/s, http 20 items/s)',
});
const rateFields = {
  itemsPerSecond: Type.Number({ description: 'Restore throughput the estimate assumes' }),
  basis: Basis,
};
const TypeEstimateSchema = Type.Object({
  type: Type.String(),
  items: Type.Integer(),
  ...rateFields,
});

export const EstimatedRestoreSchema = Type.Object(
  {
    seconds: Type.Integer({ description: 'Estimated seconds to restore everything the plan deletes, rounded up' }),
    items: Type.Integer({
      description: 'Items a restore would bring back: the items and the cascade children counted',
    }),
    ...rateFields,
    byType: Type.Array(TypeEstimateSchema, {
      description: 'Per resource type (the target type first), each with its own rate and basis',
    }),
  },
  {
    description:
      'How long restoring everything this plan deletes would take; over the policy budget maxRestoreMinutes the plan needs break-glass. basis is measured only when every type in it was measured',
  },
);

export type RestoreBasis = Static<typeof Basis>;
export type TypeEstimate = Static<typeof TypeEstimateSchema>;
export type RestoreRate = Pick<TypeEstimate, 'itemsPerSecond' | 'basis'>;
export type EstimatedRestore = Static<typeof EstimatedRestoreSchema>;

const oneDecimal = (n: number) => Math.round(n * 10) / 10;

/**
 * Sums each type's items over its rate. The overall rate is items / time, so with one type it is
 * that type's rate; the basis is `measured` only when every type that has items was measured.
 */
export function estimateRestore(parts: TypeEstimate[]): EstimatedRestore {
  const counted = parts.filter((p) => p.items > 0);
  const items = counted.reduce((n, p) => n + p.items, 0);
  const exactSeconds = counted.reduce((s, p) => s + p.items / p.itemsPerSecond, 0);
  const itemsPerSecond = exactSeconds > 0 ? items / exactSeconds : (parts[0]?.itemsPerSecond ?? 0);
  return {
    seconds: Math.ceil(exactSeconds),
    items,
    itemsPerSecond: oneDecimal(itemsPerSecond),
    basis: counted.every((p) => p.basis === 'measured') ? 'measured' : 'default',
    byType: parts.map((p) => ({ ...p, itemsPerSecond: oneDecimal(p.itemsPerSecond) })),
  };
}

/** The budget breach of an estimate over `maxRestoreMinutes`, worded like the other budgets; or null. */
export function restoreBreach(e: EstimatedRestore, maxRestoreMinutes: number): string | null {
  if (e.seconds <= maxRestoreMinutes * 60) return null;
  return (
    `an estimated ${Math.ceil(e.seconds / 60)} minutes to restore ${e.items} items ` +
    `(${e.itemsPerSecond} items/s, ${e.basis}) exceeds the budget of ${maxRestoreMinutes} minutes`
  );
}

/**
 * A measurement counts as if the kind's default had restored this many items before it. A batch
 * pays a fixed cost (picking it, its transaction, the first call's latency) whatever its size, so a
 * first rollback of a handful of items measured a rate far below the adapter's: after a 2-item
 * trial rollback, every later plan of the type estimated hours and needed break-glass. The prior
 * fades as real batches add up (a few hundred items restored and it is a small part of the sums).
 */
export const PRIOR_ITEMS = 100;

/** The rate from measured sums, smoothed towards the kind's default by PRIOR_ITEMS. */
export function measuredRate(items: number, elapsedMs: number, defaultRate: number): number {
  return (items + PRIOR_ITEMS) / (elapsedMs / 1000 + PRIOR_ITEMS / defaultRate);
}

/** Each named type's restore rate: measured for its current adapter kind, else the kind's default. */
export async function restoreRates(db: Queryable, types: string[]): Promise<Map<string, RestoreRate>> {
  const res = await db.query<{ name: string; kind: string; items: number | null; elapsed_ms: number | null }>(
    `SELECT t.name, k.kind, m.items, m.elapsed_ms
     FROM resource_types t
     CROSS JOIN LATERAL (SELECT coalesce(t.adapter->>'kind', 'registry') AS kind) k
     LEFT JOIN restore_throughput m ON m.resource_type = t.name AND m.adapter_kind = k.kind
     WHERE t.name = ANY($1::text[])`,
    [types],
  );
  const rates = new Map<string, RestoreRate>();
  for (const r of res.rows) {
    const measured = r.items !== null && r.elapsed_ms !== null && r.items > 0 && r.elapsed_ms > 0;
    const byDefault = DEFAULT_RESTORE_ITEMS_PER_SECOND[r.kind] ?? FALLBACK_ITEMS_PER_SECOND;
    rates.set(
      r.name,
      measured
        ? { itemsPerSecond: measuredRate(r.items!, r.elapsed_ms!, byDefault), basis: 'measured' }
        : { itemsPerSecond: byDefault, basis: 'default' },
    );
  }
  return rates;
}

/**
 * A plan's estimate: everything the delete takes must come back, i.e. the items (first) and the
 * children its cascade counts, each type at its own rate.
 */
export async function estimatePlanRestore(
  db: Queryable,
  counts: { type: string; count: number }[],
): Promise<EstimatedRestore> {
  const rates = await restoreRates(
    db,
    counts.map((c) => c.type),
  );
  return estimateRestore(counts.map((c) => ({ type: c.type, items: c.count, ...rates.get(c.type)! })));
}

export interface RestoreMeasurement {
  type: string;
  adapterKind: string;
  /** Items restored in the batch. */
  items: number;
  /** From picking the batch in the ledger to recording its outcomes: the whole cost of a restore. */
  elapsedMs: number;
}

export interface ThroughputRecorder {
  record(m: RestoreMeasurement): Promise<void>;
}

/**
 * Records a batch that restored something. A batch where nothing came back says nothing about
 * speed (a downstream that is down), so it is not recorded; the time of the failures in a batch
 * that did restore counts, which only makes the rate more conservative.
 */
export function pgThroughputRecorder(db: Queryable): ThroughputRecorder {
  return {
    async record(m) {
      if (m.items <= 0) return;
      await db.query(
        `INSERT INTO restore_throughput AS t (resource_type, adapter_kind, items, elapsed_ms, batches)
         VALUES ($1, $2, $3, $4, 1)
         ON CONFLICT (resource_type, adapter_kind) DO UPDATE SET
           items = t.items * $5 + EXCLUDED.items, elapsed_ms = t.elapsed_ms * $5 + EXCLUDED.elapsed_ms,
           batches = t.batches + 1, measured_at = now()`,
        // A batch that took under a millisecond counts as one: the rate stays finite.
        [m.type, m.adapterKind, m.items, Math.max(1, m.elapsedMs), THROUGHPUT_DECAY],
      );
    },
  };
}
