// A type's adapter re-pointed at another system while an operation is acting on it. Each chunk
// builds its adapter from the type's row as it is then (execution/adapters-cache.ts), so the
// running operation's next calls would go to the system declared now: deletes into a system it was
// never planned against, or, declared to the registry, "done" items whose resources were never
// touched in their own system. A start and a rollback refuse such an operation (ADAPTER_CHANGED);
// a declaration that would do it to one that has started is refused here instead, before any call.
import type pg from 'pg';
import { ConflictError } from '../../lib/errors.ts';
import { holdsResources, LIVE_STATES } from '../operations/lifecycle-types.ts';
import { actsOnType, adapterSystem, isExternal, plannedElsewhere } from '../restores/history.ts';
import type { ResourceTypeInput } from './schemas.ts';
import type { TypeProblem } from './service.ts';

export interface AdapterInUse {
  type: string;
  operationId: string;
  operationState: string;
  /** The system it was planned against, and the one the declaration would point it at. */
  was: string;
  now: string;
}

const LISTED = 20;

/**
 * Held exclusively by a declaration from its check to its commit, and shared by the guard of a
 * start or rollback (execution/engine-store.ts): neither commits on a view the other is changing.
 */
export const TYPE_SYSTEMS_LOCK = 7_342_011;

/**
 * Refusal when a declared type would reach another system (adapterSystem: kind and base URL) than
 * an operation that has started and still holds its resources was planned against; null when none.
 * Planned and approved operations are left to their start's check, ended ones to their rollback's.
 */
export async function adapterInUse(
  client: Pick<pg.PoolClient, 'query'>,
  types: Pick<ResourceTypeInput, 'name' | 'adapter'>[],
): Promise<ConflictError | null> {
  const r = await client.query<AdapterInUse>(
    `WITH d AS (
       SELECT name, coalesce(adapter, '{"kind":"registry"}') AS adapter
       FROM jsonb_to_recordset($1::jsonb) AS x(name text, adapter jsonb))
     SELECT d.name AS type, o.id AS "operationId", o.state AS "operationState",
       o.adapter_systems->>d.name AS was, ${adapterSystem('d')} AS now
     FROM d JOIN operations o ON ${plannedElsewhere('o', 'd.name', adapterSystem('d'))}
     WHERE o.started_at IS NOT NULL AND ${holdsResources('o', '$2')} AND ${actsOnType('o', 'd.name')}
     ORDER BY d.name, o.created_at
     LIMIT ${LISTED}`,
    [JSON.stringify(types.map((t) => ({ name: t.name, adapter: t.adapter ?? null }))), LIVE_STATES],
  );
  if (r.rows.length === 0) return null;
  const first = r.rows[0]!;
  // What ends it depends on where it is: a rollback or an abort under way is ended by waiting.
  const wayOut =
    first.operationState === 'rolling_back'
      ? 'Let its rollback finish (or end it with an abort that asks for it)'
      : ['cancelled', 'rollback_incomplete'].includes(first.operationState)
        ? 'It was stopped with a call still out: wait until its run is settled'
        : 'Let it finish, or abort or roll it back first';
  return new ConflictError(
    'ADAPTER_IN_USE',
    `Type ${first.type} would reach ${first.now} instead of ${first.was}, and operation ${first.operationId} (${first.operationState}) is acting on it through ${first.was}: its next calls would go to the other system. Nothing was written. ${wayOut}; a change that keeps the kind and base URL (timeouts, templates) is accepted`,
    { inUse: r.rows },
  );
}

/**
 * A PUT replaces every field of a type, and a type with no adapter is acted on in the registry
 * alone: a declaration that only meant to change a retention, leaving the adapter out, moved an
 * HTTP type to the registry without a word, and its next deletes marked registry rows and read
 * completed while nothing was sent to its system (a trial). Leaving out the adapter of a type
 * declared with another system's is refused; `{"kind":"registry"}` says it on purpose.
 */
export async function omittedAdapters(
  client: Pick<pg.PoolClient, 'query'>,
  types: { name: string; adapter?: unknown }[],
): Promise<TypeProblem[]> {
  const omitted = types.flatMap((t, i) => (t.adapter === undefined ? [{ name: t.name, i }] : []));
  if (omitted.length === 0) return [];
  const r = await client.query<{ name: string; system: string }>(
    `SELECT t.name, ${adapterSystem('t')} AS system FROM resource_types t WHERE t.name = ANY($1) AND ${isExternal('t')}`,
    [omitted.map((o) => o.name)],
  );
  const external = new Map(r.rows.map((x) => [x.name, x.system]));
  return omitted.flatMap(({ name, i }) => {
    const system = external.get(name);
    return system === undefined
      ? []
      : [
          {
            field: `types[${i}].adapter`,
            problem: 'adapter_omitted' as const,
            message: `type ${name} is declared with ${system}, and a PUT replaces every field: without its adapter it would be acted on in the registry alone, and nothing sent to that system. Give its adapter again, or {"kind":"registry"} to move it to the registry on purpose`,
          },
        ];
  });
}
