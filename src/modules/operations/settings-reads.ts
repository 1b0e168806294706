// What a plan reads besides the operation: the target type's declaration (and the refusal for one
// not declared), and the policy settings a plan applies (budgets, restore approval, plan TTL).
import type pg from 'pg';
import type { Queryable } from '../../lib/sql.ts';
import { UnprocessableError } from '../../lib/errors.ts';
import { closest } from '../../lib/closest.ts';
import { DEFAULT_RESTORE_APPROVAL, type Budgets, type RestoreApproval } from './policy.ts';
import { isExternal } from '../restores/history.ts';

/**
 * 422 UNKNOWN_TARGET_TYPE for a type no declaration names, with the declared types and the closest
 * one (`didYouMean`): "ap" for "app" was the one typo a trial met with no hint. `field` is the
 * body's (targetType), which the CLI names as --type.
 */
export async function unknownTargetType(db: Queryable, name: string): Promise<UnprocessableError> {
  const r = await db.query<{ name: string }>('SELECT name FROM resource_types ORDER BY name LIMIT $1', [
    DECLARED_SHOWN + 1,
  ]);
  const declared = r.rows.map((x) => x.name);
  const guess = closest(name, declared.slice(0, DECLARED_SHOWN));
  const more = declared.length > DECLARED_SHOWN ? ', …' : '';
  return new UnprocessableError(
    'UNKNOWN_TARGET_TYPE',
    `targetType "${name}" is not a type declared in the registry` +
      (guess ? ` (did you mean "${guess}"?)` : '') +
      (declared.length
        ? `; declared types: ${declared.slice(0, DECLARED_SHOWN).join(', ')}${more}`
        : '; none is declared yet (PUT /v1/registry/types)'),
    {
      field: 'targetType',
      targetType: name,
      ...(guess ? { didYouMean: guess } : {}),
      declared: declared.slice(0, DECLARED_SHOWN),
    },
  );
}
/** How many declared types a refusal lists. */
const DECLARED_SHOWN = 50;

export async function getResourceType(client: pg.PoolClient | pg.Pool, name: string) {
  // external: its resources live in another system (an HTTP adapter), whose deletes leave the
  // registry row's state alone.
  const res = await client.query<{
    name: string;
    id_pattern: string | null;
    cascade_to: string[] | null;
    external: boolean;
  }>(`SELECT name, id_pattern, cascade_to, ${isExternal('t')} AS external FROM resource_types t WHERE name = $1`, [
    name,
  ]);
  return res.rows[0];
}

export async function getBudgets(client: Queryable) {
  const res = await client.query<{ value: Partial<Budgets> }>(`SELECT value FROM settings WHERE key = 'budgets'`);
  return res.rows[0]?.value;
}

/** Whether a restore needs an approval (policy restoreApproval; default required). */
export async function getRestoreApproval(client: Queryable): Promise<RestoreApproval> {
  const res = await client.query<{ value: { approval?: RestoreApproval } }>(
    `SELECT value FROM settings WHERE key = 'restores'`,
  );
  return res.rows[0]?.value.approval ?? DEFAULT_RESTORE_APPROVAL;
}

export async function getPlanTtlSeconds(client: Queryable): Promise<number | undefined> {
  const res = await client.query<{ value: { planTtlSeconds?: number } }>(
    `SELECT value FROM settings WHERE key = 'plans'`,
  );
  return res.rows[0]?.value.planTtlSeconds;
}
