// What a left-out resource's reason says to people: each item's `detail`, and the sentence a
// NOTHING_TO_RESTORE / NOTHING_TO_PURGE answer adds about what its scope left out (left-out.ts).
import type { LeftOut, LeftOutReason } from './left-out.ts';

/** left_out.note: other_tenant's parent and tenant; moved's tenant and type now. */
export type Note = { parent?: string; tenant: string; type?: string };

export const keptDetail = (child: string | null) =>
  `kept: its child ${child} is not purged with it (${KEPT_WHY}), and a hard delete of the parent would take it or leave it without a parent; a later purge takes it once its children are purged`;

/** Why a child is not purged with its parent (purges/leave-out.ts, family-waves.ts). */
const KEPT_WHY =
  "within its retention, live, moved to another tenant or type since its delete, of a tenant this purge's waves take in a later wave, or outside this purge's scope (another tenant's)";

export function detailOf(reason: LeftOutReason, by: string | null, rollback: boolean, note: Note | null): string {
  switch (reason) {
    case 'moved':
      return `moved to tenant ${note?.tenant} (type ${note?.type}) since its delete by ${by} (an import says so): not this scope's to act on (by ID, a restore refuses it as superseded, its snapshot being of what it was, and a purge takes it)`;
    case 'other_tenant':
      return `of tenant ${note?.tenant}, taken along by the delete of its parent ${note?.parent} (${by}): a restore of tenant ${note?.tenant} brings it back once ${note?.parent} is back`;
    case 'erased':
      return by
        ? `erased by ${by} (compliance erasure): its snapshots are destroyed, it can never be restored`
        : 'erased (its snapshot keys are destroyed): it can never be restored';
    case 'purged':
      return by
        ? `purged by ${by}: a hard delete is final, it can never be restored`
        : 'purged (the registry says so): final, it can never be restored';
    case 'restored':
      return rollback ? `already restored by the rollback of ${by}` : `already restored by ${by}`;
    case 'deleted_again':
      return `restored since and deleted again by ${by}: a restore of ${by} brings it back`;
    case 'uncertain':
      return `the delete by ${by} may or may not have happened (a try of unknown outcome, then a failure): a rollback of ${by} restores it from its snapshot`;
    case 'active_again':
      return `active again since its delete by ${by}: brought back outside Blastgate (the registry says so), not deleted any more`;
    case 'children_kept':
      return keptDetail(by);
    case 'adapter_changed':
      return `deleted by ${by} through another system than its type's adapter reaches now (another kind or baseUrl): its hard delete would go there; declare the adapter as it was`;
    case 'restore_uncertain':
      return `a restore of it${by ? ` by ${by}` : ''} since its delete went out and its outcome is unknown: it may be live again; restore it again to settle it (a later purge takes it once its delete stands)`;
  }
}

/** The IDs of the report's sample left out for `reason`. */
export const leftOutIds = (leftOut: LeftOut, reason: LeftOutReason): string[] =>
  leftOut.items.filter((i) => i.reason === reason).map((i) => i.id);

/**
 * The NOTHING_TO_… sentence about what a scope left out, and why; not of the reasons in `except`,
 * which the caller says itself (a purge that left out every deleted resource leads with them).
 */
export function leftOutSentence(leftOut: LeftOut | null, verb: string, except: readonly LeftOutReason[] = []): string {
  if (!leftOut) return '';
  const say = (reason: LeftOutReason, n: number | undefined) => Boolean(n) && !except.includes(reason);
  const named = (n: number | undefined, ids: string[]) => `(${ids.slice(0, 5).join(', ')}${(n ?? 0) > 5 ? ', …' : ''})`;
  const of = (reason: LeftOutReason) => leftOutIds(leftOut, reason);
  const erased = leftOut.erased ? ` (${leftOut.erased} erased by a compliance erasure)` : '';
  return [
    say('purged', leftOut.purged) &&
      `; ${leftOut.purged} resource(s) of it are purged${erased} and can never be ${verb} ${named(leftOut.purged, leftOut.ids)}`,
    say('restored', leftOut.restored) &&
      `; ${leftOut.restored} resource(s) of it were restored since ${named(leftOut.restored, of('restored'))}`,
    say('deleted_again', leftOut.deletedAgain) &&
      `; ${leftOut.deletedAgain} resource(s) of it were restored and deleted again since by another operation ${named(leftOut.deletedAgain, of('deleted_again'))}`,
    say('uncertain', leftOut.uncertain) &&
      `; ${leftOut.uncertain} resource(s) of it may or may not have been deleted (a try of unknown outcome, then a failure; a rollback of that delete restores them) ${named(leftOut.uncertain, of('uncertain'))}`,
    say('active_again', leftOut.activeAgain) &&
      `; ${leftOut.activeAgain} resource(s) of it are active again, brought back outside Blastgate ${named(leftOut.activeAgain, of('active_again'))}`,
    say('moved', leftOut.moved) &&
      `; ${leftOut.moved} resource(s) of it were moved to another tenant or type since their delete ${named(leftOut.moved, of('moved'))}`,
    say('other_tenant', leftOut.otherTenant) &&
      `; ${leftOut.otherTenant} resource(s) of other tenants that its deletes took along are left to their own tenant's restore ${named(leftOut.otherTenant, of('other_tenant'))}`,
    say('restore_uncertain', leftOut.restoreUncertain) &&
      `; ${leftOut.restoreUncertain} resource(s) are left out because a restore of them went out with its outcome unknown (they may be live again: restore them again to settle it) ${named(leftOut.restoreUncertain, of('restore_uncertain'))}`,
    say('adapter_changed', leftOut.adapterChanged) &&
      `; ${leftOut.adapterChanged} resource(s) are left out because their type's adapter reaches another system than their delete went through ${named(leftOut.adapterChanged, of('adapter_changed'))}`,
    say('children_kept', leftOut.childrenKept) &&
      `; ${leftOut.childrenKept} resource(s) are kept because a child of theirs is not purged with them (${KEPT_WHY}) ${named(leftOut.childrenKept, of('children_kept'))}`,
  ]
    .filter(Boolean)
    .join('');
}
