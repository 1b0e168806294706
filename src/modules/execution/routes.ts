// Operator commands. Each becomes one lifecycle event; refusals come from decide() as 4xx. They
// run on the control pool (the engine's transaction and the reads after it), so no amount of
// uploads or reads can delay them; the ones that halt or steer a live rollout are control routes
// (lib/route-kinds.ts: own rate-limit budget, never shed).
import { Type } from '@fastify/type-provider-typebox';
import { isDeepStrictEqual } from 'node:util';
import { ERROR_EXAMPLES, type ErrorExample } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, IdParams, IdString, MultilineText, Text, type App } from '../../lib/schemas.ts';
import type { Principal } from '../auth/roles.ts';
import { approvalsMissing, type LifecycleEvent } from '../operations/lifecycle.ts';
import { operationReads } from '../operations/repository.ts';
import { operationView } from '../operations/views.ts';
import { signalTenantWarning } from './signal-tenant.ts';

const OperationIdParams = IdParams('Operation ID', 'op_lx2k9a1b2c3d4e5f6');
// Example reasons are what an operator would type from this page: executing one in Swagger UI
// records it as the halt reason people read later, so it must not claim an incident or a ticket.
const Reason = (example: string) =>
  Type.Object(
    { reason: MultilineText({ minLength: 3, maxLength: 2000, description: 'Why' }) },
    { additionalProperties: false, description: 'Why this is done', example: { reason: example } },
  );
const OptionalReason = (example: string) =>
  Type.Object(
    { reason: Type.Optional(MultilineText({ minLength: 3, maxLength: 2000 })) },
    { additionalProperties: false, description: 'Optional reason', example: { reason: example } },
  );

type Body = Record<string, unknown> | undefined;
interface Command {
  path: string;
  operationId: string;
  summary: string;
  description: string;
  roles: ('requester' | 'approver' | 'operator')[];
  /** Halts or steers a live rollout (pause, resume, abort, rollback, signals). */
  control: boolean;
  body: ReturnType<typeof Type.Object>;
  /** Examples of refusals that mean something else on this command than the defaults. */
  errors?: Record<number, ErrorExample>;
  event(p: Principal, body: Body): LifecycleEvent;
}

// The id decides identity (self-approval), the name is what a halt reason or audit detail shows.
const who = (p: Principal) => ({ id: p.tokenId, name: p.name });
const reasonOf = (b: Body, dflt: string) => (typeof b?.reason === 'string' ? b.reason : dflt);
// start and resume take an optional reason: kept in their audit event (the CLI requires one and says so).
const optionalReason = (b: Body) => (typeof b?.reason === 'string' && b.reason ? { reason: b.reason } : {});

const COMMANDS: Command[] = [
  {
    path: 'approve',
    control: false,
    operationId: 'approveOperation',
    summary: 'Approve a planned operation',
    description:
      'By an approver who is not the requester, carrying the planHash they reviewed (a different hash is 409). Break-glass plans need two approvals, one by an admin.',
    roles: ['approver'],
    errors: { 403: ERROR_EXAMPLES.selfApproval, 409: ERROR_EXAMPLES.planHashMismatch },
    body: Type.Object(
      {
        planHash: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'The planHash of the plan you reviewed' }),
        comment: Type.Optional(
          MultilineText({ maxLength: 2000, description: 'Kept with the approval and shown in its audit event' }),
        ),
      },
      {
        additionalProperties: false,
        description: 'Approval',
        example: {
          planHash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
          comment: 'Checked the tenant list with the app team',
        },
      },
    ),
    event: (p, b) => ({
      type: 'approve',
      by: who(p),
      role: p.role,
      planHash: String(b?.planHash),
      ...(typeof b?.comment === 'string' && b.comment ? { comment: b.comment } : {}),
    }),
  },
  {
    path: 'start',
    control: false,
    operationId: 'startOperation',
    summary: 'Start an approved operation',
    description: 'Queues wave 0. Refused while a global freeze is in effect.',
    roles: ['operator'],
    body: OptionalReason('Started from the dashboard after checking the plan'),
    event: (p, b) => ({ type: 'start', by: who(p), role: p.role, ...optionalReason(b) }),
  },
  {
    path: 'pause',
    control: true,
    operationId: 'pauseOperation',
    summary: 'Pause a running operation',
    description: 'Workers stop before their next destructive call; pending items stay pending.',
    roles: ['operator'],
    body: Reason('Paused from the dashboard to inspect wave 1'),
    event: (p, b) => ({ type: 'pause', by: who(p), reason: reasonOf(b, 'paused') }),
  },
  {
    path: 'resume',
    control: true,
    operationId: 'resumeOperation',
    summary: 'Resume a paused or halted operation',
    description: 'Re-queues the current wave (or resumes the bake).',
    roles: ['operator'],
    body: OptionalReason('Resumed from the dashboard after inspecting wave 1'),
    event: (p, b) => ({ type: 'resume', by: who(p), ...optionalReason(b) }),
  },
  {
    path: 'abort',
    control: true,
    operationId: 'abortOperation',
    summary: 'Abort an operation',
    description:
      'Before start: cancelled. After: a halt, handled as the halt policy says (rollback by default). While rolling back: refused (409), unless endRollback is true, which ends the rollback (rollback_incomplete).',
    roles: ['operator'],
    body: Type.Object(
      {
        reason: MultilineText({ minLength: 3, maxLength: 2000, description: 'Why' }),
        endRollback: Type.Optional(
          Type.Boolean({
            description:
              'Only while rolling_back: end the rollback (rollback_incomplete), leaving deleted what it has not restored yet. Without it, an abort of an operation that is rolling back is refused (409), so that a repeated abort never ends the rollback the first one started.',
          }),
        ),
      },
      {
        additionalProperties: false,
        description: 'Why; and, only to end a rollback in progress, endRollback',
        example: { reason: 'Aborted from the dashboard: the operation is no longer needed' },
      },
    ),
    event: (p, b) => ({
      type: 'abort',
      by: who(p),
      reason: reasonOf(b, 'aborted'),
      ...(b?.endRollback === true ? { endRollback: true } : {}),
    }),
  },
  {
    path: 'rollback',
    control: true,
    operationId: 'rollbackOperation',
    summary: 'Roll back an operation',
    description:
      'Stops execution and restores every item the operation touched, newest first. Refused 409 ADAPTER_CHANGED when a type it deleted is declared with an adapter that reaches another system now (another kind or base URL): its restores would go there. An ended operation takes its resources back first (409 RESOURCES_IN_FLIGHT when another live operation holds some).',
    roles: ['operator'],
    body: Reason('Rolled back from the dashboard after inspecting wave 1'),
    event: (p, b) => ({ type: 'rollback', by: who(p), reason: reasonOf(b, 'rollback') }),
  },
  {
    path: 'signals',
    control: true,
    operationId: 'signalOperation',
    summary: 'Report an external signal',
    description:
      'E.g. a support ticket for an affected tenant. Halts a running, baking or paused operation; recorded in every state. The example body is marked as an example: executing it halts the operation, so replace it with the real observation.',
    roles: ['requester', 'approver', 'operator'],
    body: Type.Object(
      {
        kind: Text({ minLength: 1, maxLength: 100, description: 'e.g. support_ticket, alert' }),
        tenantId: Type.Optional(IdString({ description: 'The affected tenant, when there is one' })),
        detail: Type.Optional(MultilineText({ maxLength: 2000 })),
      },
      {
        additionalProperties: false,
        description: 'An external observation',
        example: {
          kind: 'support_ticket',
          detail: 'EXAMPLE from the API docs, replace with the real observation (e.g. ZD-123: apps missing)',
        },
      },
    ),
    event: (p, b) => ({
      type: 'signal',
      kind: String(b?.kind),
      ...(typeof b?.tenantId === 'string' ? { tenantId: b.tenantId } : {}),
      ...(typeof b?.detail === 'string' ? { detail: b.detail } : {}),
      by: who(p),
    }),
  },
];

export default async function commandRoutes(app: App) {
  const controlDb = app.db.control.pool;
  const reads = operationReads(controlDb);
  for (const c of COMMANDS) {
    app.post(
      `/operations/:id/${c.path}`,
      {
        config: { auth: c.roles, audited: true, control: c.control },
        schema: {
          operationId: c.operationId,
          tags: ['operations'],
          summary: c.summary,
          description: c.description,
          params: OperationIdParams,
          body: c.body,
          response: {
            200: { ...Type.Ref('Operation'), description: 'The operation after the command' },
            // No 422: a refusal of an operator's command is a 403 or a 409 (422 is for workers' reports).
            ...errorResponses(400, 401, 403, 404, 409),
            ...Object.fromEntries(Object.entries(c.errors ?? {}).map(([s, e]) => [s, errorResponse(Number(s), e)])),
          },
        },
      },
      async (req, reply) => {
        const id = req.params.id;
        let view: ReturnType<typeof reads.view> | undefined;
        const applied = await app.engine.apply(
          id,
          c.event(req.principal!, req.body),
          { name: req.principal!.name, tokenId: req.principal!.tokenId },
          {
            // Answered 503 on its time limit (plugins/timeouts.ts): the command must not commit after.
            abandoned: () => reply.sent,
            // Read while the effects (Redis) are carried out. Awaited below; the catch only keeps a
            // failure that comes while apply() still waits for the effects from being unhandled.
            committed: () => {
              req.commandCommitted = true;
              view = reads.view(id, { drills: false });
              view.catch(() => undefined);
            },
          },
        );
        req.auditedByService = true;
        const v = await (view ?? reads.view(id, { drills: false }));
        // The view is read after the commit, and another command may have committed in between:
        // `command` says what this one did, so that no answer passes off another's change as its own.
        const missing = applied?.state.state === 'planned' ? approvalsMissing(applied.state) : null;
        const tenantId = c.path === 'signals' ? (req.body as Body)?.tenantId : undefined;
        const warning = typeof tenantId === 'string' ? await signalTenantWarning(controlDb, v.op, tenantId) : null;
        const command = applied && {
          action: c.path,
          from: applied.record.lifecycle.state,
          to: applied.state.state,
          // A signal is recorded (audited) in any state, but on an operation with nothing to stop it
          // changes nothing of it: "changed: true" on a completed one read as if it had (a trial).
          changed: c.path === 'signals' ? !isDeepStrictEqual(applied.state, applied.record.lifecycle) : applied.changed,
          ...(missing ? { approvalsNeeded: missing } : {}),
          ...(warning ? { warning } : {}),
        };
        return {
          ...operationView(
            v.op,
            v.progress,
            v.unfinished,
            undefined,
            await app.queueHolds(v.op.state, v.lastProgressAt),
            v.summary,
          ),
          ...(command ? { command } : {}),
        };
      },
    );
  }
}
