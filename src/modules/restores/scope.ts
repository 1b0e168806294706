// A restore's scope: exactly one of a tenant (since a time), an ended delete operation, or a list
// of IDs of one type — checked before anything is resolved, each refusal naming the fields.
import type pg from 'pg';
import type { LeftOut } from './left-out.ts';
import { leftOutSentence } from './left-out-words.ts';
import { ConflictError, NotFoundError, UnprocessableError } from '../../lib/errors.ts';
import { LIVE_STATES } from '../operations/lifecycle-types.ts';
import { SCOPE_FIELDS, type CreateRestoreBody, type RestoreScope } from './schemas.ts';

/** How far ahead of this server's clock a client's asOf or dueBefore may be (its clock may run a little fast). */
export const CLOCK_SKEW_MS = 60_000;

/** Exactly one scope, with its fields complete; otherwise 422 naming the fields. */
export function scopeOf(
  b: Omit<CreateRestoreBody, 'reason' | 'ticket'>,
  noun: 'restore' | 'purge' = 'restore',
): RestoreScope {
  const given = (Object.keys(SCOPE_FIELDS) as (keyof typeof SCOPE_FIELDS)[]).filter((k) =>
    SCOPE_FIELDS[k].some((f) => b[f] !== undefined),
  );
  const fields = given.flatMap((k) => SCOPE_FIELDS[k].filter((f) => b[f] !== undefined));
  const allowed = [
    ...Object.values(SCOPE_FIELDS).map((f) => f.join(' [+ ') + (f.length > 1 ? ']' : '')),
    ...(noun === 'purge' ? ['dueBefore'] : []),
  ];
  if (given.length === 0)
    throw new UnprocessableError(
      'SCOPE_REQUIRED',
      `A ${noun} needs exactly one scope: tenantId (optionally with deletedSince), operationId, or targetType with ids${noun === 'purge' ? ', or dueBefore' : ''}`,
      {
        fields: [],
        allowed: ['tenantId', 'operationId', 'targetType + ids', ...(noun === 'purge' ? ['dueBefore'] : [])],
      },
    );
  if (given.length > 1)
    throw new UnprocessableError(
      'SCOPE_CONFLICT',
      `A ${noun} takes exactly one scope, got ${fields.join(', ')}: ${noun} ${noun === 'purge' ? 'what is due (dueBefore), ' : ''}a tenant, an operation, or a list of IDs`,
      { fields, allowed },
    );
  const asOf = b.asOf ?? null;
  // No snapshot is ever taken after now, so a future asOf would quietly mean "the latest": most
  // likely a mistyped year or time zone, refused rather than restored to a state nobody asked for.
  const now = Date.now();
  if (asOf !== null && Date.parse(asOf) > now + CLOCK_SKEW_MS) {
    const here = new Date(now).toISOString();
    throw new UnprocessableError(
      'AS_OF_IN_FUTURE',
      `asOf ${asOf} is in the future (it is ${here} here): each resource goes back to its last snapshot before asOf, and none is taken after now; omit asOf for the state before the latest delete, or correct the time`,
      // `field` as VALIDATION_FAILED and the other time refusals name it; `fields` as the scope refusals do.
      { field: 'body.asOf', fields: ['asOf'], asOf, now: here },
    );
  }
  // Nothing is deleted after now: a future deletedSince selects nothing, and was answered as if the
  // tenant had nothing to restore or purge (a trial) where it is a mistyped year or time zone.
  if (b.deletedSince !== undefined && Date.parse(b.deletedSince) > now + CLOCK_SKEW_MS) {
    const here = new Date(now).toISOString();
    throw new UnprocessableError(
      'DELETED_SINCE_IN_FUTURE',
      `deletedSince ${b.deletedSince} is in the future (it is ${here} here): nothing was deleted after now; omit it for everything of the tenant Blastgate deleted, or correct the time`,
      { field: 'body.deletedSince', fields: ['deletedSince'], deletedSince: b.deletedSince, now: here },
    );
  }
  if (given[0] === 'tenant') {
    if (b.tenantId === undefined)
      throw new UnprocessableError('SCOPE_INCOMPLETE', 'deletedSince needs tenantId: whose deletes since then?', {
        fields: ['deletedSince'],
        missing: ['tenantId'],
      });
    return { kind: 'tenant', tenantId: b.tenantId, deletedSince: b.deletedSince ?? null, asOf };
  }
  if (given[0] === 'operation') return { kind: 'operation', operationId: b.operationId!, asOf };
  if (b.targetType === undefined || b.ids === undefined) {
    const missing = b.targetType === undefined ? 'targetType' : 'ids';
    throw new UnprocessableError(
      'SCOPE_INCOMPLETE',
      `A ${noun} of IDs needs both targetType and ids; ${missing} is missing`,
      {
        fields,
        missing: [missing],
      },
    );
  }
  return { kind: 'ids', targetType: b.targetType, ids: b.ids.length, asOf };
}

/**
 * The operation a restore or purge of `{ operationId }` acts on: a delete that no longer holds its
 * resources. The refusal says what the requester can do about it, for the state it is in.
 */
export async function checkSource(client: pg.PoolClient, id: string, noun: 'restore' | 'purge' = 'restore') {
  const r = await client.query<{ action: string; state: string; started: boolean }>(
    'SELECT action, state, started_at IS NOT NULL AS started FROM operations WHERE id = $1',
    [id],
  );
  const op = r.rows[0];
  if (!op) throw new NotFoundError('Operation', id);
  if (op.action !== 'delete')
    throw new UnprocessableError(
      'NOT_A_DELETE',
      `Operation ${id} is ${/^[aeiou]/.test(op.action) ? 'an' : 'a'} ${op.action}, not a delete: there is nothing of it to ${noun}`,
      {
        operationId: id,
        action: op.action,
      },
    );
  if ((LIVE_STATES as readonly string[]).includes(op.state)) {
    // Not started yet, it has deleted nothing: only an abort ends it (a rollback is refused then).
    const way =
      op.state === 'planned' || op.state === 'approved'
        ? `it has not started, so it deleted nothing yet: abort it (POST /v1/operations/${id}/abort) if it is not wanted, or let it run and end first`
        : op.state === 'rolling_back'
          ? // Its rollback already brings back what it deleted ("or roll it back first" read as a contradiction: a trial).
            `its rollback is bringing back what it deleted: let it end (rolled_back, or rollback_incomplete with what it could not restore, which a restore of the operation then takes)`
          : `let it end, or roll it back (POST /v1/operations/${id}/rollback) first`;
    throw new ConflictError('OPERATION_LIVE', `Operation ${id} is ${op.state} and still holds its resources; ${way}`, {
      operationId: id,
      state: op.state,
    });
  }
  // Ended before it ever started (rejected, cancelled, expired): "Blastgate deleted nothing of
  // operation … that is still deleted (what was rolled back or restored since …)" read as if it
  // had run (a trial).
  if (!op.started)
    throw new UnprocessableError(
      noun === 'restore' ? 'NOTHING_TO_RESTORE' : 'NOTHING_TO_PURGE',
      `Operation ${id} ended ${op.state} without ever starting: it deleted nothing, so there is nothing of it to ${noun}`,
      { operationId: id, state: op.state },
    );
}

/**
 * The tenant a restore or purge of `{ tenantId }` names is in the registry. A typo used to read as
 * "Blastgate deleted nothing of tenant t_nope" (422 NOTHING_TO_RESTORE), which sounds like an
 * answer about a real tenant (a new-user trial).
 */
export async function checkTenant(client: pg.PoolClient, tenantId: string) {
  const r = await client.query('SELECT 1 FROM tenants WHERE id = $1', [tenantId]);
  if (r.rowCount === 0) throw new NotFoundError('Tenant', tenantId);
}

export function nothingToRestore(scope: RestoreScope, leftOut: LeftOut | null = null) {
  const what =
    scope.kind === 'tenant'
      ? `tenant ${scope.tenantId}${scope.deletedSince ? ` since ${scope.deletedSince}` : ''}`
      : `operation ${scope.kind === 'operation' ? scope.operationId : ''}`;
  return new UnprocessableError(
    'NOTHING_TO_RESTORE',
    `Blastgate deleted nothing of ${what} that is still deleted (what was rolled back or restored since is not deleted)` +
      leftOutSentence(leftOut, 'restored'),
    { scope, ...(leftOut ? { leftOut } : {}) },
  );
}
