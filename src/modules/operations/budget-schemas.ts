// Budget schemas: the per-operation budgets (tenants, items, estimated minutes to restore), the
// rolling 24 h budgets across operations (both in
// the admin policy), and the rolling usage a plan shows.
import { Type } from '@fastify/type-provider-typebox';
import { DEFAULT_BUDGETS } from './policy.ts';
import { DEFAULT_ROLLING_BUDGETS, ROLLING_WINDOW_HOURS } from './rolling-budgets.ts';

const limits = (what: string) =>
  Type.Object(
    {
      maxTenants: Type.Integer({ minimum: 1, maximum: 10_000_000, description: `Tenants ${what} without break-glass` }),
      maxItems: Type.Integer({ minimum: 1, maximum: 100_000_000, description: `Items ${what} without break-glass` }),
    },
    { additionalProperties: false },
  );

const maxRestoreMinutes = Type.Integer({
  minimum: 1,
  maximum: 525_600,
  description: `Estimated minutes to restore everything an operation deletes (plan.estimatedRestore) allowed without break-glass; default ${DEFAULT_BUDGETS.maxRestoreMinutes}`,
});
export const BUDGETS_EXAMPLE = {
  maxTenants: 50,
  maxItems: 100_000,
  maxRestoreMinutes: DEFAULT_BUDGETS.maxRestoreMinutes,
};

export const Budgets = Type.Object(
  { ...limits('one operation may touch').properties, maxRestoreMinutes },
  { additionalProperties: false, description: 'Per-operation budgets in force', example: BUDGETS_EXAMPLE },
);

// maxRestoreMinutes is optional on the way in so that clients written before it keep working; the
// budgets are replaced as a whole, so an omitted one is the default again.
export const BudgetsInput = Type.Object(
  { ...limits('one operation may touch').properties, maxRestoreMinutes: Type.Optional(maxRestoreMinutes) },
  {
    additionalProperties: false,
    description: `Per-operation budgets; an omitted maxRestoreMinutes is the default (${DEFAULT_BUDGETS.maxRestoreMinutes})`,
    example: BUDGETS_EXAMPLE,
  },
);

const ROLLING_DESCRIPTION =
  'Budgets across operations over a rolling 24 h: an operation counts with its whole plan from the moment it is planned, ' +
  'while it is live and for 24 h after it ended (rejected, cancelled and expired ones do not count); a tenant counts once';

export const RollingBudgets = Type.Object(
  {
    perRequester: limits(`one requester's operations may touch in ${ROLLING_WINDOW_HOURS} h`),
    total: limits(`everyone's operations may touch in ${ROLLING_WINDOW_HOURS} h`),
  },
  {
    additionalProperties: false,
    description: ROLLING_DESCRIPTION,
    example: DEFAULT_ROLLING_BUDGETS,
  },
);

/**
 * The rolling budgets on the way in. `windowHours` is not a setting: the window is the service's
 * (ROLLING_WINDOW_HOURS, in the statement that counts usage). PUT takes it back as GET shows it,
 * so that GET → edit → PUT works; policy-routes.ts refuses another value, saying it is fixed.
 */
export const RollingBudgetsInput = Type.Object(
  {
    windowHours: Type.Optional(
      Type.Literal(ROLLING_WINDOW_HOURS, {
        description: `The rolling window in hours: fixed at ${ROLLING_WINDOW_HOURS}, not settable. Taken (or left out) so that the policy GET answers can be sent back as it is; another value is 400 VALIDATION_FAILED`,
      }),
    ),
    ...RollingBudgets.properties,
  },
  {
    additionalProperties: false,
    description: ROLLING_DESCRIPTION,
    example: { windowHours: ROLLING_WINDOW_HOURS, ...DEFAULT_ROLLING_BUDGETS },
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
