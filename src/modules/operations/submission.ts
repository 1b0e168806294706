// Reading a submission (JSON inline or NDJSON streamed) and the answers to a rejected one: the
// offending IDs as shown (look-alikes escaped), with the report URL of a recorded rejection, or
// for a dry run (nothing stored) the note that there is none and how complete the inline list is.
import type { Readable } from 'node:stream';
import { BadRequestError, UnprocessableError } from '../../lib/errors.ts';
import { isQuotedNdjson, parseJsonLine, QUOTED_NDJSON, type LineLimits } from '../../lib/lines.ts';
import { escapedIfNeeded } from '../../lib/text.ts';
import { checkJsonBody } from '../../plugins/json-body.ts';
import { validateValue } from '../../plugins/validation.ts';
import type { RouteAuth } from '../auth/roles.ts';
import { NDJSON } from '../../plugins/uploads.ts';
import { inlineBatches, MAX_INLINE_IDS, MAX_STREAMED_IDS, ndjsonLineId, type IdBatches } from './intake.ts';
import { readIdStream } from './id-stream.ts';
import { checkWaveSteps, WAVE_STEP, WAVE_STEP_RULE } from './policy.ts';
import { CreateOperationBody, OperationSpec, type TextUploadQuery } from './schemas.ts';
import { describeScope, type ScopeReport } from './scope.ts';

/** Who may submit an operation: the submit routes and the CI intake queue. */
export const SUBMIT_AUTH: RouteAuth = ['requester'];

export const STREAM_LIMITS: LineLimits = { maxBytes: 256 * 1024 * 1024, maxLineBytes: 64 * 1024, batchSize: 10_000 };

/** Offenders as shown: each ID that is not plain ASCII also escaped, so look-alikes show. */
function showOffenders(offenders: unknown): unknown {
  if (!offenders || typeof offenders !== 'object') return offenders;
  return Object.fromEntries(
    Object.entries(offenders as Record<string, { id: string }[]>).map(([cls, list]) => [
      cls,
      list.map((o) => ({ ...o, ...escapedIfNeeded(o.id) })),
    ]),
  );
}

/** What each class of rejected ID means, as the rejection's first sentence says it (deletes, restores, purges). */
const OFFENCES: Record<string, string> = {
  unknown: 'not in the registry',
  type_mismatch: 'of another type',
  pattern_mismatch: "not matching the type's ID pattern",
  duplicate: 'submitted more than once',
  already_deleted: 'already deleted (soft-deleted or purged)',
  out_of_scope: "outside the token's scope",
  in_flight: 'held by another live operation',
  protected: 'of a protected resource',
  not_deleted: 'not deleted (nothing to bring back or purge)',
  uncertain: 'whose delete may or may not have happened (roll back that delete to restore it from its snapshot)',
  within_retention: 'still within their retention',
  restore_uncertain:
    'whose restore may or may not have happened (they may be live again: restore them again to settle it, or leave them out)',
  purged: 'already purged (gone for good: never restorable, leave them out)',
  erased: 'erased (their snapshots are gone: never restorable, leave them out)',
  no_snapshot: 'without a snapshot to restore from',
  superseded: 'changed since that delete (restoring would undo a later change)',
  adapter_changed:
    "deleted through another system than their type's adapter reaches now (their restores would go there: declare the adapter as it was)",
  parent_deleted: 'whose parent is deleted (each names it in via: restore it first, or with them)',
  moved:
    "whose cascade takes a resource moved to another tenant or type since its delete (each names it in via: another customer's now; list it on its own to purge it)",
  child_not_listed:
    "whose soft-deleted child (each names it in via) is due too but not in this purge: its own delete took it, not the parent's (purge the child first)",
  child_later:
    'whose child (each names it in via) is of a tenant the purge\'s waves take later, so the parent would go first (purge the child first, or plan one wave: rollout.waves ["100%"])',
};

/** "2 IDs submitted more than once (duplicate), 1 ID not in the registry (unknown)". */
export function offenceSummary(counts: Record<string, number>) {
  return Object.entries(counts)
    .filter(([c, n]) => c !== 'ok' && n > 0)
    .map(
      ([c, n]) => `${n.toLocaleString('en')} ${n === 1 ? 'ID' : 'IDs'} ${OFFENCES[c] ?? c.replace(/_/g, ' ')} (${c})`,
    )
    .join(', ');
}

/** out_of_scope IDs: say what the token may submit, so the fix is clear without asking an admin. */
const scopeNote = (scope: ScopeReport | null) => (scope ? ` ${describeScope(scope)}` : '');

export function planRejected(
  counts: Record<string, number>,
  offenders: unknown,
  operationId: string,
  scope: ScopeReport | null,
) {
  const reportUrl = `/v1/operations/${operationId}/report`;
  return new UnprocessableError(
    'PLAN_REJECTED',
    `The operation was rejected: ${offenceSummary(counts)}.${scopeNote(scope)} Nothing will run; every offending ID is listed at ${reportUrl}. Resubmit a corrected list (with a new Idempotency-Key).`,
    { operationId, counts, offenders: showOffenders(offenders), reportUrl, ...(scope ? { scope } : {}) },
  );
}

/**
 * A dry run stores nothing, so there is no report to link to: the first SAMPLE_PER_CLASS offenders
 * of each class are inline, and `offendersComplete` says whether that is all of them.
 */
export function dryRunRejected(
  counts: Record<string, number>,
  offenders: Record<string, unknown[] | undefined>,
  scope: ScopeReport | null,
  /** The IDs came from a list (false: a restore's or purge's tenant or operation scope). */
  fromList = true,
) {
  const listed = Object.values(offenders).reduce((n, l) => n + (l?.length ?? 0), 0);
  const total = Object.entries(counts).reduce((n, [c, k]) => (c === 'ok' ? n : n + k), 0);
  const complete = listed === total;
  return new UnprocessableError(
    'PLAN_REJECTED',
    `The plan would be rejected: ${offenceSummary(counts)}.${scopeNote(scope)} This was a dry run: nothing was stored, so there is no report URL; ${complete ? 'every offending ID is listed here' : `the first ${listed} of ${total} offending IDs are listed here`}. Submit without dryRun to record the rejection with its full report, or ${fromList ? 'fix the list first' : 'settle first what each one names (the IDs come from the scope, not a list)'}.`,
    {
      operationId: null,
      dryRun: true,
      counts,
      offenders: showOffenders(offenders),
      offendersComplete: complete,
      reportUrl: null,
      ...(scope ? { scope } : {}),
    },
  );
}

/** The spec and the ID batches of a JSON or NDJSON submission. */
export async function readSubmission(
  media: string | undefined,
  body: unknown,
): Promise<{ spec: OperationSpec; ids: IdBatches; maxIds: number }> {
  if (media === NDJSON) {
    const { head, batches } = await readIdStream(body as Readable, STREAM_LIMITS, {
      format: 'ndjson',
      head: true,
      slowId: ndjsonLineId,
    });
    if (!head) throw new BadRequestError('EMPTY_BODY', 'The NDJSON body is empty; line 1 must be the operation spec');
    const first = parseJsonLine(head);
    if (isQuotedNdjson(first))
      throw new BadRequestError('VALIDATION_FAILED', `Line 1 ${QUOTED_NDJSON}`, [
        { field: 'line 1', message: QUOTED_NDJSON },
      ]);
    const spec = validateValue<OperationSpec>(OperationSpec, first, 'line 1');
    // Named where it was given, like the schema's refusals (the CLI maps `line 1.…` to its flags).
    if (spec.rollout?.waves) checkWaveSteps(spec.rollout.waves, 'line 1.rollout.waves');
    return { spec, ids: batches, maxIds: MAX_STREAMED_IDS };
  }
  return jsonSubmission(body);
}

/**
 * A JSON submission (the body of POST /v1/operations, or the `operation` of a CI intake job),
 * validated: the one validation both take, so a bad body is refused with the same error by either.
 * The route's JSON parser has already checked the value's depth and text (json-body.ts); a job's
 * data was parsed by BullMQ, so that check runs here too (cheap next to planning).
 */
export function jsonSubmission(
  body: unknown,
  /** Where the fields are, as refusals name them: `body` (the route), `operation` (an intake job's data). */
  where = 'body',
): { spec: OperationSpec; ids: IdBatches; maxIds: number } {
  checkJsonBody(body, true, where);
  const { ids, ...spec } = validateValue<CreateOperationBody>(CreateOperationBody, body, where);
  if (spec.rollout?.waves) checkWaveSteps(spec.rollout.waves, `${where}.rollout.waves`);
  return { spec, ids: inlineBatches(ids), maxIds: MAX_INLINE_IDS };
}

const ONE_STEP = new RegExp(`^${WAVE_STEP}$`);
/** As many as rollout.waves takes (its schema's maxItems). */
const MAX_WAVE_STEPS = 20;

/**
 * The spec of a text/plain upload, from its query string: the flat rollout fields (`waves` as
 * "1,10%,100%", `bakeSeconds`, `concurrency`, `onHalt`) go where a JSON spec has them, and a wave
 * step is refused naming `querystring.waves.<n>`, as the JSON body's are named.
 */
export function textSpec(query: TextUploadQuery): OperationSpec {
  const { waves, bakeSeconds, concurrency, onHalt, ...rest } = query;
  const steps = waves?.split(',');
  if (steps && steps.length > MAX_WAVE_STEPS)
    throw new BadRequestError('VALIDATION_FAILED', `Invalid querystring.waves: at most ${MAX_WAVE_STEPS} steps`, [
      { field: 'querystring.waves', message: `must have at most ${MAX_WAVE_STEPS} steps (got ${steps.length})` },
    ]);
  steps?.forEach((step, k) => {
    if (!ONE_STEP.test(step))
      throw new BadRequestError('VALIDATION_FAILED', `Invalid querystring.waves.${k}: ${WAVE_STEP_RULE}`, [
        { field: `querystring.waves.${k}`, value: step, message: WAVE_STEP_RULE },
      ]);
  });
  if (steps) checkWaveSteps(steps, 'querystring.waves');
  const rollout = Object.fromEntries(
    Object.entries({ waves: steps, bakeSeconds, concurrency }).filter(([, v]) => v !== undefined),
  );
  return validateValue<OperationSpec>(
    OperationSpec,
    {
      ...rest,
      ...(Object.keys(rollout).length ? { rollout } : {}),
      ...(onHalt !== undefined ? { haltPolicy: { onHalt } } : {}),
    },
    'querystring',
  );
}
