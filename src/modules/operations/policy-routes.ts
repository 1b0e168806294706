// Admin policy: the budgets every plan is checked against, per operation and across operations over
// a rolling 24 h. A plan over budget is still made but needs a break-glass approval (an admin's,
// besides the approver's).
import { Type } from '@fastify/type-provider-typebox';
import { inTransaction } from '../../lib/sql.ts';
import { errorResponses, type App } from '../../lib/schemas.ts';
import { appendAudit } from '../audit/repository.ts';
import type { Queryable } from '../../lib/sql.ts';
import { Budgets, RollingBudgets, RollingBudgetsView } from './budget-schemas.ts';
import { DEFAULT_BUDGETS, DEFAULT_PLAN_TTL_SECONDS } from './policy.ts';
import { DEFAULT_ROLLING_BUDGETS, getRollingBudgets, ROLLING_WINDOW_HOURS } from './rolling-budgets.ts';
import { getBudgets, getPlanTtlSeconds } from './repository.ts';

const PlanTtl = Type.Integer({
  minimum: 60,
  maximum: 2_592_000,
  description:
    'Seconds a planned or approved operation may wait for its start before it expires (and releases its resources)',
});

const EXAMPLE = {
  budgets: { maxTenants: 50, maxItems: 100_000 },
  planTtlSeconds: DEFAULT_PLAN_TTL_SECONDS,
  rollingBudgets: DEFAULT_ROLLING_BUDGETS,
};

const PolicyView = Type.Object(
  { budgets: Budgets, planTtlSeconds: PlanTtl, rollingBudgets: RollingBudgetsView },
  {
    description: 'The policy in force',
    example: { ...EXAMPLE, rollingBudgets: { windowHours: ROLLING_WINDOW_HOURS, ...DEFAULT_ROLLING_BUDGETS } },
  },
);

const PolicyBody = Type.Object(
  { budgets: Budgets, planTtlSeconds: Type.Optional(PlanTtl), rollingBudgets: Type.Optional(RollingBudgets) },
  {
    additionalProperties: false,
    description: 'The new policy; an omitted planTtlSeconds or rollingBudgets keeps the one in force',
    example: EXAMPLE,
  },
);

const readPolicy = async (db: Queryable) => ({
  budgets: { ...DEFAULT_BUDGETS, ...(await getBudgets(db)) },
  planTtlSeconds: (await getPlanTtlSeconds(db)) ?? DEFAULT_PLAN_TTL_SECONDS,
  rollingBudgets: { windowHours: ROLLING_WINDOW_HOURS, ...(await getRollingBudgets(db)) },
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
        description: 'Budgets that plans are checked against (per operation and rolling 24 h), and the plan TTL.',
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
          'Replaces the budgets (and the plan TTL and the rolling budgets when given). Applies to plans made afterwards; existing plans keep the verdict they were approved with and the expiry they were given.',
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
        if (req.body.rollingBudgets !== undefined) {
          await c.query(
            `INSERT INTO settings (key, value, updated_by) VALUES ('rolling_budgets', $1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
            [JSON.stringify(req.body.rollingBudgets), req.principal!.name],
          );
        }
        if (req.body.planTtlSeconds !== undefined) {
          await c.query(
            `INSERT INTO settings (key, value, updated_by) VALUES ('plans', $1, $2)
             ON CONFLICT (key) DO UPDATE SET value = $1, updated_by = $2, updated_at = now()`,
            [JSON.stringify({ planTtlSeconds: req.body.planTtlSeconds }), req.principal!.name],
          );
        }
        await appendAudit(c, {
          actor: req.principal!.name,
          action: 'policy.set',
          outcome: 'accepted',
          payload: {
            budgets: req.body.budgets,
            planTtlSeconds: req.body.planTtlSeconds ?? null,
            rollingBudgets: req.body.rollingBudgets ?? null,
          },
        });
      });
      req.auditedByService = true;
      return readPolicy(app.db.pool);
    },
  );
}
