// Which items a rollback restores, and in what order (promise 4: "restore everything the operation
// touched, newest first"). Pure, so the rule is tested apart from the ledger queries that feed it.

/** The ledger columns the rule needs. executedSeq is BIGINT in Postgres, hence number | bigint. */
export interface RollbackCandidate {
  resourceId: string;
  state: string;
  executedSeq: number | bigint | null;
  /** Cascades: the item's ledger seq, and for a descendant its parent's seq and its depth (1 = child). */
  seq?: number;
  parentSeq?: number | null;
  depth?: number;
}

const newestFirst = (a: RollbackCandidate, b: RollbackCandidate) => {
  const x = a.executedSeq!;
  const y = b.executedSeq!;
  if (x > y) return -1; // relational operators compare number and bigint exactly
  if (x < y) return 1;
  if (a.resourceId !== b.resourceId) return a.resourceId < b.resourceId ? -1 : 1;
  return (a.seq ?? 0) - (b.seq ?? 0);
};

/**
 * Items whose destructive call may have happened, newest first.
 * - executedSeq is assigned before the destructive call, so a non-null executedSeq means "may have
 *   been touched" whatever the item's state (a claimed item of a killed worker, or one reset to
 *   pending, may still have been deleted). Restoring something that was not deleted is harmless;
 *   missing something that was is not.
 * - Items already 'restored' are left out, so a rollback resumed after a crash does not restore
 *   twice (promise 5). 'restore_failed' and 'restoring' items are kept: they are retried.
 * - A cascade was the newest thing its parent's delete did (a delete reaches the leaves before the
 *   parent goes), so undoing it comes right after the parent: each descendant whose parent is in
 *   the list follows it, shallowest first — a child is back before its own children are.
 * - Ties on executedSeq (should not happen) are broken by resourceId so the order is stable.
 * The input is not modified.
 */
export function rollbackOrder<T extends RollbackCandidate>(items: readonly T[]): T[] {
  const eligible = items.filter((i) => i.executedSeq !== null && i.state !== 'restored');
  const parents = new Map<number, T>();
  for (const i of eligible) if (i.seq !== undefined && i.parentSeq == null) parents.set(i.seq, i);
  const lead = (i: T): T => (i.parentSeq != null ? parents.get(i.parentSeq) : undefined) ?? i;
  return eligible.sort((a, b) => {
    const la = lead(a);
    const lb = lead(b);
    if (la !== lb) return newestFirst(la, lb);
    if (a === la) return -1;
    if (b === lb) return 1;
    return (a.depth ?? 0) - (b.depth ?? 0) || newestFirst(a, b);
  });
}
