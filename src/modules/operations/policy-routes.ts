// Admin policy: the budgets every plan is checked against, per operation (tenants, items,
// estimated minutes to restore) and across operations over a rolling 24 h. A plan over budget is
// still made but needs a break-glass approval (an admin's, besides the approver's).
import { Type } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { BadRequestError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import { errorResponses, type App } from '../../lib/schemas.ts';
import { appendAudit } from '../audit/repository.ts';
import type { Queryable } from '../../lib/sql.ts';
import { BUDGETS_EXAMPLE, Budgets, BudgetsInput, RollingBudgetsInput, RollingBudgetsView } from './budget-schemas.ts';
import { DEFAULT_BUDGETS, DEFAULT_PLAN_TTL_SECONDS, DEFAULT_RESTORE_APPROVAL } from './policy.ts';
import { DEFAULT_ROLLING_BUDGETS, getRollingBudgets, ROLLING_WINDOW_HOURS } from './rolling-budgets.ts';
import { getBudgets, getPlanTtlSeconds, getRestoreApproval } from './settings-reads.ts';
import {
  DEFAULT_RETENTION_DAYS,
  getRetentionDays,
  MAX_RETENTION_DAYS,
  MIN_RETENTION_DAYS,
  setRetentionDays,
} from '../purges/retention.ts';

const PlanTtl = Type.Integer({
  minimum: 60,
  maximum: 2_592_000,
  description:
    'Seconds a planned or approved operation may wait for its start before it expires (and releases its resources)',
});

const RestoreApprovalField = Type.Union([Type.Literal('required'), Type.Literal('none')], {
  description: `Whether a restore (POST /v1/restores) needs an approval like a delete (required, the default) or runs once planned (none: with autoStart it starts at once). A restore over budget needs its break-glass approvals either way`,
});

const RetentionDaysField = Type.Integer({
  minimum: MIN_RETENTION_DAYS,
  maximum: MAX_RETENTION_DAYS,
  description: `Days a soft-deleted resource is kept before a purge may hard-delete it, for types that declare no retentionDays of their own (default ${DEFAULT_RETENTION_DAYS})`,
});

const EXAMPLE = {
  budgets: BUDGETS_EXAMPLE,
  planTtlSeconds: DEFAULT_PLAN_TTL_SECONDS,
  rollingBudgets: DEFAULT_ROLLING_BUDGETS,
  restoreApproval: DEFAULT_RESTORE_APPROVAL,
  retentionDays: DEFAULT_RETENTION_DAYS,
};

const PolicyView = Type.Object(
  {
    budgets: Budgets,
    planTtlSeconds: PlanTtl,
    rollingBudgets: RollingBudgetsView,
    restoreApproval: RestoreApprovalField,
    retentionDays: RetentionDaysField,
  },
  {
    description: 'The policy in force',
    example: { ...EXAMPLE, rollingBudgets: { windowHours: ROLLING_WINDOW_HOURS, ...DEFAULT_ROLLING_BUDGETS } },
  },
);

const PolicyBody = Type.Object(
  {
    budgets: Type.Optional(BudgetsInput),
    planTtlSeconds: Type.Optional(PlanTtl),
    rollingBudgets: Type.Optional(RollingBudgetsInput),
    restoreApproval: Type.Optional(RestoreApprovalField),
    retentionDays: Type.Optional(RetentionDaysField),
  },
  {
    additionalProperties: false,
    description:
      'The new policy; an omitted budgets, planTtlSeconds, rollingBudgets, restoreApproval or retentionDays keeps the one in force (budgets given are replaced as a whole). What GET answers is taken as it is (rollingBudgets.windowHours only as the fixed value)',
    // One field, and the stricter choice: "Try it out" as it stands must not reset budgets or
    // retention an admin set (the whole policy as example did).
    example: { restoreApproval: 'required' },
  },
);

/**
 * preValidation of PUT: another rolling window is refused here, before the schema, whose answer
 * would only be "must be 24", with one that says the window is fixed and not a setting.
 */
async function windowIsFixed(req: FastifyRequest) {
  const rolling = (req.body as { rollingBudgets?: unknown } | null | undefined)?.rollingBudgets;
  if (typeof rolling !== 'object' || rolling === null || !('windowHours' in rolling)) return;
  if (rolling.windowHours === ROLLING_WINDOW_HOURS) return;
  const field = 'body.rollingBudgets.windowHours';
  const message = `is fixed at ${ROLLING_WINDOW_HOURS} (hours) and cannot be set: send ${ROLLING_WINDOW_HOURS}, as GET /v1/admin/policy shows it, or leave it out`;
  throw new BadRequestError('VALIDATION_FAILED', `Invalid ${field}: ${message}`, [
    { field, message, allowed: [ROLLING_WINDOW_HOURS] },
  ]);
}

const readPolicy = async (db: Queryable) => ({
  budgets: { ...DEFAULT_BUDGETS, ...(await getBudgets(db)) },
  planTtlSeconds: (await getPlanTtlSeconds(db)) ?? DEFAULT_PLAN_TTL_SECONDS,
  rollingBudgets: { windowHours: ROLLING_WINDOW_HOURS, ...(await getRollingBudgets(db)) },
  restoreApproval: await getRestoreApproval(db),
  retentionDays: await getRetentionDays(db),
});

export default async function policyRoutes(app: App) {
  app.get(
    '/admin/policy',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'getPolicy',
        tags: ['admin'],
        summary: 'Read the policy',
        description:
          'Budgets that plans are checked against (per operation: tenants, items, estimated minutes to restore; rolling 24 h: tenants, items), the plan TTL, whether restores need an approval, and the default retention of soft-deleted resources before a purge.',
        response: { 200: PolicyView, ...errorResponses(401) },
      },
    },
    async () => readPolicy(app.db.pool),
  );

  app.put(
    '/admin/policy',
    {
      config: { auth: ['admin'], audited: true },
      preValidation: windowIsFixed,
      schema: {
        operationId: 'setPolicy',
        tags: ['admin'],
        summary: 'Set the policy',
        description: `Replaces the budgets, the plan TTL, the rolling budgets, restoreApproval and retentionDays that are given; each one left out keeps the one in force. Takes the document GET answers as it is: rollingBudgets.windowHours is fixed at ${ROLLING_WINDOW_HOURS} and taken only with that value (another is 400 VALIDATION_FAILED naming it). Applies to plans made afterwards; existing plans keep the verdict they were approved with and the expiry they were given.`,
        body: PolicyBody,
        response: { 200: PolicyView, ...errorResponses(400, 401, 403) },
      },
    },
    async (req) => {
      // The window is the service's, not stored with the budgets (windowIsFixed checked it).
      const given = req.body.rollingBudgets;
      const rolling = given && { perRequester: given.perRequester, total: given.total };
      await inTransaction(app.db.pool, async (c) => {
        if (req.body.budgets !== undefined) {
          await c.query(
            `INSERT INTO settings (key, value, updated_by) VALUES ('budgets', $1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
            [JSON.stringify(req.body.budgets), req.principal!.name],
          );
        }
        if (rolling !== undefined) {
          await c.query(
            `INSERT INTO settings (key, value, updated_by) VALUES ('rolling_budgets', $1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
            [JSON.stringify(rolling), req.principal!.name],
          );
        }
        if (req.body.planTtlSeconds !== undefined) {
          await c.query(
            `INSERT INTO settings (key, value, updated_by) VALUES ('plans', $1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
            [JSON.stringify({ planTtlSeconds: req.body.planTtlSeconds }), req.principal!.name],
          );
        }
        if (req.body.restoreApproval !== undefined) {
          await c.query(
            `INSERT INTO settings (key, value, updated_by) VALUES ('restores', $1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
            [JSON.stringify({ approval: req.body.restoreApproval }), req.principal!.name],
          );
        }
        if (req.body.retentionDays !== undefined)
          await setRetentionDays(c, req.body.retentionDays, req.principal!.name);
        await appendAudit(c, {
          actor: req.principal!.name,
          action: 'policy.set',
          outcome: 'accepted',
          payload: {
            budgets: req.body.budgets ?? null,
            planTtlSeconds: req.body.planTtlSeconds ?? null,
            rollingBudgets: rolling ?? null,
            restoreApproval: req.body.restoreApproval ?? null,
            retentionDays: req.body.retentionDays ?? null,
          },
        });
      });
      req.auditedByService = true;
      return readPolicy(app.db.pool);
    },
  );
}
