// Which items a rollback restores, and in what order (promise 4: "restore everything the operation
// touched, newest first"). Pure, so the rule is tested apart from the ledger queries that feed it.

/** The ledger columns the rule needs. executedSeq is BIGINT in Postgres, hence number | bigint. */
export interface RollbackCandidate {
  resourceId: string;
  state: string;
  executedSeq: number | bigint | null;
}

/**
 * Items whose destructive call may have happened, newest first.
 * - executedSeq is assigned before the destructive call, so a non-null executedSeq means "may have
 *   been touched" whatever the item's state (a claimed item of a killed worker, or one reset to
 *   pending, may still have been deleted). Restoring something that was not deleted is harmless;
 *   missing something that was is not.
 * - Items already 'restored' are left out, so a rollback resumed after a crash does not restore
 *   twice (promise 5). 'restore_failed' and 'restoring' items are kept: they are retried.
 * - Ties on executedSeq (should not happen) are broken by resourceId so the order is stable.
 * The input is not modified.
 */
export function rollbackOrder<T extends RollbackCandidate>(items: readonly T[]): T[] {
  return items
    .filter((i) => i.executedSeq !== null && i.state !== 'restored')
    .sort((a, b) => {
      const x = a.executedSeq!;
      const y = b.executedSeq!;
      if (x > y) return -1; // relational operators compare number and bigint exactly
      if (x < y) return 1;
      return a.resourceId < b.resourceId ? -1 : a.resourceId > b.resourceId ? 1 : 0;
    });
}
