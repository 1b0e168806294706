// Rollout and halt policies: what a requester may set per operation, with the defaults an
// operator would expect. Shared by the planner (waves, budgets) and the lifecycle (halting).
import { Type, type Static } from '@fastify/type-provider-typebox';
import { BadRequestError } from '../../lib/errors.ts';

/** One wave step, unanchored (a text upload's `waves` lists several, comma-separated). */
export const WAVE_STEP = '([1-9][0-9]{0,6}|([1-9][0-9]?(\\.[0-9]+)?|100)%)';
/** A wave boundary: a number of tenants ("1") or a cumulative share of tenants ("10%"). */
export const WAVE_STEP_RULE = 'must be a number of tenants ("1" to "9999999") or a share of them ("0.5%" to "100%")';
export const WaveStep = Type.String({
  pattern: `^${WAVE_STEP}$`,
  'x-rule': WAVE_STEP_RULE,
  description: 'Cumulative tenants reached by the end of this wave: a count ("1") or a share ("10%")',
  example: '10%',
});

export const RolloutPolicy = Type.Object(
  {
    waves: Type.Array(WaveStep, {
      minItems: 1,
      maxItems: 20,
      description:
        'Canary waves after the internal-tenant wave, cumulative: each step reaches more tenants than the one before it (counts compared with counts, shares with shares; nothing after "100%"). The last one is always extended to 100%',
      default: ['1', '1%', '10%', '50%', '100%'],
    }),
    bakeSeconds: Type.Integer({
      minimum: 0,
      maximum: 86_400,
      default: 300,
      description: 'Time to wait and probe between waves',
    }),
    concurrency: Type.Integer({
      minimum: 1,
      maximum: 256,
      default: 16,
      description:
        'Destructive calls in flight at once, per worker process (the chunks of the operation in one process share them)',
    }),
    maxItemsPerMinute: Type.Integer({
      minimum: 1,
      maximum: 10_000_000,
      default: 6_000_000,
      description: 'Velocity cap on items',
    }),
    maxTenantsPerMinute: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 1_000_000,
      description: 'Velocity cap on newly touched tenants',
    }),
    waveDeadlineSeconds: Type.Integer({
      minimum: 1,
      maximum: 604_800,
      default: 3_600,
      description: 'A wave still running after this long halts the operation',
    }),
    restoreDrill: Type.Boolean({
      default: true,
      description:
        'Deletes (soft) only: after the first wave that deleted something, one of its items is restored, read back, compared with its pre-delete snapshot and deleted again; a failure or a difference halts the operation (restore_drill_failed)',
    }),
  },
  { additionalProperties: false, description: 'How the operation is rolled out' },
);

export const HaltPolicy = Type.Object(
  {
    onHalt: Type.Union([Type.Literal('rollback'), Type.Literal('pause')], {
      default: 'rollback',
      description: 'What a halt does: restore everything touched, or stop and wait for a human',
    }),
    maxFailureRate: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.05,
      description: 'Item failure share in a wave above which the operation halts',
    }),
    minSample: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 20,
      description: 'Items finished before the failure rate is judged',
    }),
    maxConsecutiveFailures: Type.Integer({
      minimum: 1,
      maximum: 1_000_000,
      default: 5,
      description: 'Consecutive item failures that halt at once',
    }),
    probe: Type.Union([Type.Literal('required'), Type.Literal('optional')], {
      default: 'required',
      description: 'required: a resource type without a health probe makes analysis inconclusive (pause)',
    }),
    probeTimeoutMs: Type.Integer({
      minimum: 50,
      maximum: 60_000,
      default: 2_000,
      description: 'A probe that does not answer in time is unhealthy',
    }),
    stallSeconds: Type.Integer({
      minimum: 10,
      maximum: 604_800,
      default: 900,
      description: 'An operation that runs, bakes or rolls back without any progress for this long is stalled',
    }),
    onStall: Type.Union([Type.Literal('halt'), Type.Literal('pause')], {
      default: 'halt',
      description:
        'What the watchdog does to a stalled operation: halt it (then onHalt applies) or pause it for a human',
    }),
  },
  { additionalProperties: false, description: 'When and how the operation stops itself' },
);

export type RolloutPolicy = Static<typeof RolloutPolicy>;
export type HaltPolicy = Static<typeof HaltPolicy>;

export const DEFAULT_ROLLOUT: RolloutPolicy = {
  waves: ['1', '1%', '10%', '50%', '100%'],
  bakeSeconds: 300,
  concurrency: 16,
  maxItemsPerMinute: 6_000_000,
  maxTenantsPerMinute: 1_000_000,
  waveDeadlineSeconds: 3_600,
  restoreDrill: true,
};
export const DEFAULT_HALT: HaltPolicy = {
  onHalt: 'rollback',
  maxFailureRate: 0.05,
  minSample: 20,
  maxConsecutiveFailures: 5,
  probe: 'required',
  probeTimeoutMs: 2_000,
  stallSeconds: 900,
  onStall: 'halt',
};

/**
 * Whether a restore needs an approval like a delete (required, the default), or may run once planned
 * (none; a restore over budget still needs its break-glass approvals).
 */
export type RestoreApproval = 'required' | 'none';
export const DEFAULT_RESTORE_APPROVAL: RestoreApproval = 'required';

/** Planned and approved operations expire after this long unless the admin policy says otherwise. */
export const DEFAULT_PLAN_TTL_SECONDS = 86_400;

/** Budgets: beyond these a plan is still made but needs a break-glass approval. */
export interface Budgets {
  maxTenants: number;
  maxItems: number;
  /** The plan's estimated time to restore everything it deletes (restore-estimate.ts). */
  maxRestoreMinutes: number;
}
export const DEFAULT_BUDGETS: Budgets = { maxTenants: 50, maxItems: 100_000, maxRestoreMinutes: 240 };

/**
 * Waves are cumulative: each step must reach more tenants than the one before it, and nothing comes
 * after 100%. Steps out of order were taken as written — ["50%", "10%"] made the first canary wave
 * half of every tenant — and an empty step was dropped in silence. A count and a share are not
 * compared (which one reaches more depends on how many tenants the plan has). Throws
 * VALIDATION_FAILED naming the step as `field` names where it was given (`body.rollout.waves`):
 * checked where each spec is validated (submission.ts for every delete path, the CI intake's
 * too; the restore and purge services).
 */
export function checkWaveSteps(steps: readonly string[], field: string): void {
  const before: { count?: string; share?: string } = {};
  steps.forEach((step, k) => {
    const fail = (why: string) => {
      throw new BadRequestError('VALIDATION_FAILED', `Invalid ${field}.${k}: ${why}`, [
        { field: `${field}.${k}`, value: step, message: why },
      ]);
    };
    if (before.share === '100%') fail('comes after "100%", which already reaches every tenant');
    const unit = step.endsWith('%') ? 'share' : 'count';
    const prev = before[unit];
    if (prev !== undefined && parseFloat(step) <= parseFloat(prev))
      fail(`must reach more tenants than the step before it ("${prev}"): waves are cumulative`);
    before[unit] = step;
  });
}

export const withRolloutDefaults = (p: Partial<RolloutPolicy> | undefined): RolloutPolicy => ({
  ...DEFAULT_ROLLOUT,
  ...p,
});
export const withHaltDefaults = (p: Partial<HaltPolicy> | undefined): HaltPolicy => ({ ...DEFAULT_HALT, ...p });
