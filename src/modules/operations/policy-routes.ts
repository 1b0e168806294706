// Admin policy: the budgets every plan is checked against (tenants, items, estimated minutes to
// restore). A plan over budget is still made but needs a break-glass approval (an admin's, besides
// the approver's).
import { Type } from '@fastify/type-provider-typebox';
import { inTransaction } from '../../lib/sql.ts';
import { errorResponses, type App } from '../../lib/schemas.ts';
import { appendAudit } from '../audit/repository.ts';
import type { Queryable } from '../../lib/sql.ts';
import { DEFAULT_BUDGETS, DEFAULT_PLAN_TTL_SECONDS, DEFAULT_RESTORE_APPROVAL } from './policy.ts';
import { getBudgets, getPlanTtlSeconds, getRestoreApproval } from './repository.ts';

const budgetFields = {
  maxTenants: Type.Integer({
    minimum: 1,
    maximum: 10_000_000,
    description: 'Tenants one operation may touch without break-glass',
  }),
  maxItems: Type.Integer({
    minimum: 1,
    maximum: 100_000_000,
    description: 'Items one operation may touch without break-glass',
  }),
  maxRestoreMinutes: Type.Integer({
    minimum: 1,
    maximum: 525_600,
    description: `Estimated minutes to restore everything an operation deletes (plan.estimatedRestore) allowed without break-glass; default ${DEFAULT_BUDGETS.maxRestoreMinutes}`,
  }),
};
const BUDGETS_EXAMPLE = { maxTenants: 50, maxItems: 100_000, maxRestoreMinutes: DEFAULT_BUDGETS.maxRestoreMinutes };

const Budgets = Type.Object(budgetFields, {
  additionalProperties: false,
  description: 'Per-operation budgets in force',
  example: BUDGETS_EXAMPLE,
});

// maxRestoreMinutes is optional on the way in so that clients written before it keep working; the
// budgets are replaced as a whole, so an omitted one is the default again.
const BudgetsInput = Type.Object(
  { ...budgetFields, maxRestoreMinutes: Type.Optional(budgetFields.maxRestoreMinutes) },
  {
    additionalProperties: false,
    description: `Per-operation budgets; an omitted maxRestoreMinutes is the default (${DEFAULT_BUDGETS.maxRestoreMinutes})`,
    example: BUDGETS_EXAMPLE,
  },
);

const PlanTtl = Type.Integer({
  minimum: 60,
  maximum: 2_592_000,
  description:
    'Seconds a planned or approved operation may wait for its start before it expires (and releases its resources)',
});

const RestoreApprovalField = Type.Union([Type.Literal('required'), Type.Literal('none')], {
  description: `Whether a restore (POST /v1/restores) needs an approval like a delete (required, the default) or runs once planned (none: with autoStart it starts at once). A restore over budget needs its break-glass approvals either way`,
});

const PolicyView = Type.Object(
  { budgets: Budgets, planTtlSeconds: PlanTtl, restoreApproval: RestoreApprovalField },
  {
    description: 'The policy in force',
    example: {
      budgets: BUDGETS_EXAMPLE,
      planTtlSeconds: DEFAULT_PLAN_TTL_SECONDS,
      restoreApproval: DEFAULT_RESTORE_APPROVAL,
    },
  },
);

const PolicyBody = Type.Object(
  {
    budgets: BudgetsInput,
    planTtlSeconds: Type.Optional(PlanTtl),
    restoreApproval: Type.Optional(RestoreApprovalField),
  },
  {
    additionalProperties: false,
    description: 'The new policy; an omitted planTtlSeconds or restoreApproval keeps the one in force',
    example: { budgets: BUDGETS_EXAMPLE, planTtlSeconds: DEFAULT_PLAN_TTL_SECONDS },
  },
);

const readPolicy = async (db: Queryable) => ({
  budgets: { ...DEFAULT_BUDGETS, ...(await getBudgets(db)) },
  planTtlSeconds: (await getPlanTtlSeconds(db)) ?? DEFAULT_PLAN_TTL_SECONDS,
  restoreApproval: await getRestoreApproval(db),
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
          'Budgets that plans are checked against (tenants, items, estimated minutes to restore), the plan TTL, and whether restores need an approval.',
        response: { 200: PolicyView, ...errorResponses(401) },
      },
    },
    async () => readPolicy(app.db.pool),
  );

  app.put(
    '/admin/policy',
    {
      config: { auth: ['admin'], audited: true },
      schema: {
        operationId: 'setPolicy',
        tags: ['admin'],
        summary: 'Set the policy',
        description:
          'Replaces the budgets (and the plan TTL and restoreApproval when given). Applies to plans made afterwards; existing plans keep the verdict they were approved with and the expiry they were given.',
        body: PolicyBody,
        response: { 200: PolicyView, ...errorResponses(400, 401, 403) },
      },
    },
    async (req) => {
      await inTransaction(app.db.pool, async (c) => {
        await c.query(
          `INSERT INTO settings (key, value, updated_by) VALUES ('budgets', $1, $2)
                     ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
          [JSON.stringify(req.body.budgets), req.principal!.name],
        );
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
        await appendAudit(c, {
          actor: req.principal!.name,
          action: 'policy.set',
          outcome: 'accepted',
          payload: {
            budgets: req.body.budgets,
            planTtlSeconds: req.body.planTtlSeconds ?? null,
            restoreApproval: req.body.restoreApproval ?? null,
          },
        });
      });
      req.auditedByService = true;
      return readPolicy(app.db.pool);
    },
  );
}
