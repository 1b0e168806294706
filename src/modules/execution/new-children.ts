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
import { textArray } from '../../lib/pg-array.ts';
import type { Queryable } from '../../lib/sql.ts';
import { takenByCascade } from '../operations/cascade-plan.ts';
import { isExternal } from '../restores/history.ts';

/** A planned descendant of a root, under which a new child counts against that root. */
export interface PlannedParent {
  id: string;
  type: string;
  root: string;
}

/**
 * Child `c` counts as new (see above) when taken by the cascade of a parent of type `parentType`:
 * $2 the root type (nothing to look for, and no index probe per item, when it cascades to nothing),
 * $3 the children the plan lists, $4 the operation.
 */
const isNewChild = (
  parentType: string,
) => `EXISTS (SELECT 1 FROM resource_types rt WHERE rt.name = $2 AND cardinality(rt.cascade_to) > 0)
       AND c.state = 'active'
       AND (NOT ${isExternal('t')} OR c.updated_at > (SELECT o.created_at FROM operations o WHERE o.id = $4))
       AND ${takenByCascade('c.type', parentType, `'{}'`)}
       AND NOT (c.id = ANY($3::text[]))`;

/**
 * Of `roots` (resource IDs of `type`, in operation `opId`), those with a new child of a cascade type
 * not in `known`, each with the first: a child of the root itself, or of one of its planned
 * descendants (`under`, taken with it), so an app imported under a planned site's planned
 * environment counts as the site's new child as an app under the site itself does.
 */
export async function newChildren(
  db: Queryable,
  opId: string,
  type: string,
  roots: string[],
  known: string[],
  under: PlannedParent[] = [],
): Promise<Map<string, string>> {
  if (roots.length === 0) return new Map();
  // Roots without planned descendants (every chunk of the one-statement registry path) are asked
  // in the first shape: the list of parents cost that path 5–25% of its items/s (npm run bench --
  // waves, interleaved with the commit before).
  const r = await db.query<{ root: string; child: string }>(
    under.length === 0
      ? `SELECT DISTINCT ON (c.parent_id) c.parent_id AS root, c.id AS child
     FROM resources c JOIN resource_types t ON t.name = c.type
     WHERE c.parent_id = ANY($1::text[]) AND ${isNewChild('$2::text')}
     ORDER BY c.parent_id, c.id`
      : `WITH parents AS (
       SELECT id, $2::text AS type, id AS root FROM unnest($1::text[]) id
       UNION ALL
       SELECT * FROM unnest($5::text[], $6::text[], $7::text[])
     )
     SELECT DISTINCT ON (p.root) p.root, c.id AS child
     FROM parents p JOIN resources c ON c.parent_id = p.id JOIN resource_types t ON t.name = c.type
     WHERE ${isNewChild('p.type')}
     ORDER BY p.root, c.id`,
    under.length === 0
      ? [textArray(roots), type, textArray(known), opId]
      : [
          textArray(roots),
          type,
          textArray(known),
          opId,
          textArray(under.map((u) => u.id)),
          textArray(under.map((u) => u.type)),
          textArray(under.map((u) => u.root)),
        ],
  );
  return new Map(r.rows.map((x) => [x.root, x.child]));
}

export const NEW_CHILD = (id: string, child: string) =>
  `${id} not deleted: its cascade would now take ${child}, which the plan does not list (created, moved in or made active since); nothing was changed`;
