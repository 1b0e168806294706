// Budget schemas: the per-operation budgets, the rolling 24 h budgets across operations (both in
// the admin policy), and the rolling usage a plan shows.
import { Type } from '@fastify/type-provider-typebox';
import { DEFAULT_ROLLING_BUDGETS, ROLLING_WINDOW_HOURS } from './rolling-budgets.ts';

const limits = (what: string) =>
  Type.Object(
    {
      maxTenants: Type.Integer({ minimum: 1, maximum: 10_000_000, description: `Tenants ${what} without break-glass` }),
      maxItems: Type.Integer({ minimum: 1, maximum: 100_000_000, description: `Items ${what} without break-glass` }),
    },
    { additionalProperties: false },
  );

export const Budgets = Type.Object(limits('one operation may touch').properties, {
  additionalProperties: false,
  description: 'Per-operation budgets',
  example: { maxTenants: 50, maxItems: 100_000 },
});

export const RollingBudgets = Type.Object(
  {
    perRequester: limits(`one requester's operations may touch in ${ROLLING_WINDOW_HOURS} h`),
    total: limits(`everyone's operations may touch in ${ROLLING_WINDOW_HOURS} h`),
  },
  {
    additionalProperties: false,
    description:
      'Budgets across operations over a rolling 24 h: an operation counts with its whole plan from the moment it is planned, ' +
      'while it is live and for 24 h after it ended (rejected, cancelled and expired ones do not count); a tenant counts once',
    example: DEFAULT_ROLLING_BUDGETS,
  },
);

export const RollingBudgetsView = Type.Object(
  { windowHours: Type.Integer({ description: 'The rolling window' }), ...RollingBudgets.properties },
  {
    description: 'The rolling budgets in force',
    example: { windowHours: ROLLING_WINDOW_HOURS, ...DEFAULT_ROLLING_BUDGETS },
  },
);

const measure = Type.Object({
  before: Type.Integer({ description: 'Counted in other operations in the window' }),
  withPlan: Type.Integer({ description: 'With this plan added' }),
  max: Type.Integer({ description: 'The budget' }),
});
const usage = (who: string) =>
  Type.Object(
    {
      operations: Type.Integer({ description: 'Other operations counted in the window' }),
      tenants: measure,
      items: measure,
    },
    { description: `Usage by ${who}` },
  );

export const RollingUsage = Type.Object(
  { windowHours: Type.Integer(), requester: usage('the requester'), total: usage('everyone') },
  { description: 'Tenants and items deleted across operations over the rolling window, and the budgets' },
);
