// A delete's chunk looks for children its items' cascades would take that the plan does not list:
// created, moved in or made active since (an import while the operation runs). `start` refuses a
// plan that went stale that way (plan-stale.ts); this covers the run itself. Without it, an app
// imported under a site during the canary's bake stayed active under its deleted site, and the
// operation ended `completed` (a trial). Such an item is left, failed for good, saying which child.
//
// A child kept in the registry is new when it is active. Another system's child reads `active` in
// the registry even after Blastgate deleted it (its state is its system's), so there a child counts
// as new when its row changed after the plan (an import created it, moved it in or said it is
// active): one the plan left out as deleted and that nothing touched since is not.
import type { Queryable } from '../../lib/sql.ts';
import { takenByCascade } from '../operations/cascade-plan.ts';
import { isExternal } from '../restores/history.ts';

/** Of `roots` (resource IDs of `type`, in operation `opId`), those with a new child of a cascade type not in `known`, each with the first. */
export async function newChildren(
  db: Queryable,
  opId: string,
  type: string,
  roots: string[],
  known: string[],
): Promise<Map<string, string>> {
  if (roots.length === 0) return new Map();
  // Nothing to look for, and no index probe per item, when the type cascades to nothing.
  const r = await db.query<{ root: string; child: string }>(
    `SELECT DISTINCT ON (c.parent_id) c.parent_id AS root, c.id AS child
     FROM resources c JOIN resource_types t ON t.name = c.type
     WHERE EXISTS (SELECT 1 FROM resource_types rt WHERE rt.name = $2 AND cardinality(rt.cascade_to) > 0)
       AND c.parent_id = ANY($1::text[]) AND c.state = 'active'
       AND (NOT ${isExternal('t')} OR c.updated_at > (SELECT o.created_at FROM operations o WHERE o.id = $4))
       AND ${takenByCascade('c.type', '$2::text', `'{}'`)}
       AND NOT (c.id = ANY($3::text[]))
     ORDER BY c.parent_id, c.id`,
    [roots, type, known, opId],
  );
  return new Map(r.rows.map((x) => [x.root, x.child]));
}

export const NEW_CHILD = (id: string, child: string) =>
  `${id} not deleted: its cascade would now take ${child}, which the plan does not list (created, moved in or made active since); nothing was changed`;
