// Target adapters: how Blastgate acts on the system that owns a resource type.
//
// The contract is batch-oriented so that the registry adapter can act with one set-based
// statement per chunk while the HTTP adapter fans a batch out over a small worker pool.
//
// Rules every adapter keeps (they carry promises 3–5 of DESIGN.md):
// - Results come back in the same order as the items, one per item. An adapter does not reject
//   because items or the owning system failed (a refused connection or a failed statement fails
//   its items as retryable); a rejection means a bug.
// - `ok: true` only when the owning system confirmed the action (or its outcome already held:
//   soft-deleting an already soft-deleted resource is ok). Never "done" for something not done.
// - `permanent: true` means retrying cannot help (4xx, missing resource, wrong type/tenant);
//   otherwise the failure is retryable and the outcome is unknown (a timeout may have applied).
//   `unapplied: true` on a permanent failure says more: nothing was changed by any attempt.
// - `skipped` means no request for that item was ever sent: shouldContinue() said stop first.
//   An item that was attempted and then halted before a retry reports its last failure instead,
//   because the owning system may have applied it and rollback must consider it.
// - Every destructive HTTP call carries the caller's Idempotency-Key, the same on every retry, so
//   the owning system applies it at most once however often Blastgate sends it.

export interface AdapterItem {
  operationId: string;
  resourceId: string;
  tenantId: string;
  /** Resource type name, e.g. `app`. */
  type: string;
  /**
   * Cascades: the descendants a delete of this item takes with it (each of its own type), shallowest
   * first. What an adapter does with them is its `cascade`.
   */
  descendants?: AdapterItem[];
  /** A descendant's level below the submitted item (1: its child); deletes sent on their own go deepest first. */
  depth?: number;
}

export type DestructiveAction = 'softDelete' | 'hardDelete' | 'restore';

export type ItemOk = {
  ok: true;
  data?: unknown;
  /**
   * `same_transaction` adapters, restore: one result per item.descendants entry, in order (a
   * parent can come back while one of its descendants cannot). A delete takes all or none of them.
   */
  descendants?: ItemResult[];
};
export type ItemFailed = {
  ok: false;
  permanent: boolean;
  error: string;
  status?: number;
  /** Requests the call sent for the item (HTTP: its tries, which a halt may have cut short). */
  attempts?: number;
  /**
   * Told to stop between two attempts of a retryable failure: the outcome is unknown (an earlier
   * attempt may have applied), and the item was not given its full retry budget. The caller hands
   * it back to be sent again with the same Idempotency-Key, which tells the real outcome.
   */
  interrupted?: true;
  /**
   * Certainly changed nothing (permanent failures only): no attempt reached the owning system, or
   * every attempt was refused definitively (an HTTP 4xx other than 404 and 410 and other than those
   * retried; a registry statement that left the row as it was). Absent, the call may have been
   * applied: a timeout, a connection error or a 5xx, a 404 or 410 ("already gone"), or any refusal
   * that followed an attempt whose outcome is unknown. A chunk clears the write-ahead mark of such an
   * item when its own run set the mark, so that a rollback does not restore what was never deleted.
   */
  unapplied?: true;
  /**
   * A delete whose cascade went through more than one adapter (execution/cascade-own.ts): one
   * result per item.descendants entry, since some of them may be deleted while the item is not.
   */
  descendants?: ItemResult[];
  /**
   * Of such a delete: the item's own delete certainly did not happen (its call was never sent, or
   * was refused with nothing changed: `unapplied`), while a descendant's delete may have gone
   * through. The item keeps its mark for that descendant; a rollback restores the descendant only.
   */
  ownUnsent?: true;
};
export type ItemSkipped = { ok: false; skipped: true; error: 'halted' };
/** `data` is the snapshot body for snapshot(); destructive actions leave it out. */
export type ItemResult = ItemOk | ItemFailed | ItemSkipped;

export type ProbeOutcome = 'healthy' | 'unhealthy' | 'error' | 'timeout' | 'not_configured';
/** Analysis fails closed: everything but `healthy` counts against the wave. */
export type ProbeResult = { result: ProbeOutcome; detail?: string };

export interface ApplyOptions {
  /** Unique per (operation, item, action); see `idempotencyKeyFor` in signing.ts. */
  idempotencyKey(item: AdapterItem, action: DestructiveAction): string;
  /** Checked before every destructive call (every attempt); false => remaining items are skipped. */
  shouldContinue(): boolean;
  /** Destructive calls in flight at once; bounds the halt overshoot. */
  concurrency: number;
  /** For restore: resourceId -> the stored snapshot data taken before the destructive call. */
  snapshots?: Map<string, unknown>;
  /**
   * A delete operation's guard (registry-apply.ts DeleteGuard): the registry adapter leaves what was
   * protected after the plan. Unset for restores, purges and erasures.
   */
  guard?: { approvedTenants: string[] };
}

export interface TargetAdapter {
  readonly kind: 'http' | 'registry';
  /**
   * How a cascade reaches the item's descendants (their snapshots are stored before either):
   * - same_transaction: apply() changes them with the item, atomically, both ways (the registry);
   * - downstream: the owning system cascades a delete itself; each descendant is restored through
   *   its own type's adapter, after its parent (HTTP).
   */
  readonly cascade: 'same_transaction' | 'downstream';
  /**
   * The system that owns this adapter's resources: `registry`, or an HTTP adapter's base URL
   * (normalized). A parent's delete reaches a descendant by itself only within the same system (one
   * statement, or the owning system's own cascade); a descendant kept elsewhere is deleted through
   * its own adapter first (execution/cascade-own.ts).
   */
  readonly system: string;
  /**
   * Top-level snapshot fields the owning system rewrites on every write (bookkeeping such as
   * updatedAt), not content: a restore drill compares a read-back with the pre-delete snapshot
   * without them, since the restore is itself a write.
   */
  readonly volatileFields?: readonly string[];
  /** Reads the current state of each resource, to be stored before any destructive call. */
  snapshot(items: AdapterItem[], opts: { concurrency: number }): Promise<ItemResult[]>;
  apply(action: DestructiveAction, items: AdapterItem[], opts: ApplyOptions): Promise<ItemResult[]>;
  /** One health observation for one tenant; never throws. */
  probe(tenantId: string, opts: { timeoutMs: number }): Promise<ProbeResult>;
  /**
   * Optional: one observation for each of many tenants at once, in their order, as `probe` would
   * give each (a bake round probes every tenant touched so far: 251 one-row queries took 23–37 ms
   * of the round after a 50,000-item wave). Never throws.
   */
  probeMany?(tenantIds: string[], opts: { timeoutMs: number }): Promise<ProbeResult[]>;
  /** Releases sockets; the adapter must not be used afterwards. */
  close?(): Promise<void>;
}

export const isSkipped = (r: ItemResult): r is ItemSkipped => !r.ok && 'skipped' in r;
export const SKIPPED: ItemSkipped = Object.freeze({ ok: false, skipped: true, error: 'halted' });
