// The CI intake queue: a pipeline submits an operation as a BullMQ job instead of a POST, and
// reads the plan (or the refusal) back from the job. Each job takes the path POST /v1/operations
// takes — the same authentication, role rule, body validation (jsonSubmission) and planning
// (operationService), with the job ID as its Idempotency-Key — so the queue can accept nothing the
// route would refuse, and refuses with the same codes.
//
// The bearer token leaves the job's data before anything else happens (token-seal.ts). Outcomes:
// a plan is the job's return value; a refusal fails the job for good (UnrecoverableError) with a
// JSON failedReason { code, message, details }; a dependency that is down is retried here, with
// backoff, however many attempts the pipeline gave the job.
import { UnrecoverableError, type Job } from 'bullmq';
import type pg from 'pg';
import { AppError, BadRequestError, RetryLaterError, UnauthorizedError } from '../../lib/errors.ts';
import { DEPENDENCY_NAMES, dependencyOf } from '../../lib/outage-log.ts';
import { isTransient } from '../../lib/transient.ts';
import { isPoolExhausted } from '../../plugins/db.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { auditAlone } from '../audit/repository.ts';
import type { AuthService } from '../auth/service.ts';
import { roleRefusal, type Principal } from '../auth/roles.ts';
import type { OperationService, ServiceLog, SubmitResult } from '../operations/service.ts';
import { dryRunRejected, jsonSubmission, planRejected, SUBMIT_AUTH } from '../operations/submission.ts';
import type { ScopeReport } from '../operations/scope.ts';
import { openToken, sealToken } from './token-seal.ts';
import { intakeTokenFingerprint } from '../../cli/token-fingerprint.ts';

export const INTAKE_QUEUE = 'intake';
/** A job ID is the Idempotency-Key: what BullMQ takes as a custom ID, and what the route's header takes. */
export const JOB_ID_PATTERN = /^[A-Za-z0-9._-]{1,200}$/;
/** Retries of a job whose dependency was down: about 5 minutes in all (1 s, 2 s, … capped at 60 s). */
export const MAX_TRANSIENT_RETRIES = 10;
const MAX_BACKOFF_MS = 60_000;
/** The route a job stands for, in refusals and the audit log. */
const ROUTE = 'POST /v1/operations';

/** What a job carries while it is processed (the token itself is gone after the first look). */
interface IntakeData {
  operation?: unknown;
  /** Whose token added the job (token-fingerprint.ts): a client compares it before it takes a kept job's outcome. */
  tokenFingerprint?: string;
  sealedToken?: string;
  retries?: number;
}
const OWN_FIELDS = ['token', 'operation', 'tokenFingerprint', 'sealedToken', 'retries'];

export interface IntakeResult {
  operationId: string | null;
  state: string;
  planHash: string | null;
  plan: unknown;
  links: { self: string; events: string } | null;
  /**
   * The idempotency key had made this operation before (over REST, or by a job BullMQ no longer
   * keeps): nothing new was planned. Without it a pipeline re-run could not tell (a trial).
   */
  replayed: boolean;
}

export interface IntakeDeps {
  pool: pg.Pool;
  auth: Pick<AuthService, 'authenticate'>;
  operations: Pick<OperationService, 'submit'>;
  sealKey: Buffer;
  metrics?: Pick<Metrics, 'intakeJobs'>;
  log: ServiceLog;
}

/** A refusal as the failedReason: the JSON of the error a client of the route would get (minus requestId). */
export class IntakeRefusal extends UnrecoverableError {
  constructor(readonly refusal: { code: string; message: string; [k: string]: unknown }) {
    super(JSON.stringify(refusal));
  }
}

function unauthenticated(err: AppError | null, message: string): AppError {
  // One code for a pipeline to test; why the token does not work is in details.reason, as REST's code.
  return new UnauthorizedError(err?.message ?? message, 'UNAUTHENTICATED', {
    reason: err?.code ?? 'UNAUTHORIZED',
    ...(err?.details && typeof err.details === 'object' ? err.details : {}),
  });
}

function outcomeOf(r: SubmitResult): IntakeResult {
  if (r.kind === 'dry_run')
    return {
      operationId: null,
      state: 'dry_run',
      planHash: r.plan.planHash,
      plan: r.plan,
      links: null,
      replayed: false,
    };
  if (r.kind === 'dry_run_rejected') throw dryRunRejected(r.classification.counts, r.classification.samples, r.scope);
  const op = r.operation;
  if (r.kind === 'rejected') {
    const rej = op.rejection as unknown as { counts: Record<string, number>; offenders: unknown; scope?: ScopeReport };
    throw planRejected(rej.counts, rej.offenders, op.id, rej.scope ?? null);
  }
  const self = `/v1/operations/${op.id}`;
  return {
    operationId: op.id,
    state: op.state,
    planHash: op.planHash,
    plan: op.plan,
    links: { self, events: `${self}/events` },
    replayed: r.replayed,
  };
}

export function intakeService(deps: IntakeDeps) {
  const { pool, metrics, log } = deps;

  /** The principal of the job's token, refused like the route refuses (401) otherwise. */
  async function principalOf(secret: string | undefined, notText = false, notObject?: string): Promise<Principal> {
    // A token given as a number (or anything but a string) is not "no token": say what is wrong.
    // Nor is data that is no object at all (null read as a missing token field: trial L).
    const tokenMissing = notObject
      ? `The job data is ${notObject}, not an object {token, operation}: it has no bearer token (data.token)`
      : notText
        ? 'The job data has a token that is not a string (data.token must be the bearer token, as text)'
        : 'The job data has no bearer token (data.token)';
    if (!secret) throw unauthenticated(null, tokenMissing);
    let principal: Principal;
    try {
      principal = await deps.auth.authenticate(secret);
    } catch (err) {
      if (err instanceof UnauthorizedError) throw unauthenticated(err, '');
      throw err;
    }
    return principal;
  }

  async function plan(job: Job, data: IntakeData, unknownFields: string[], principal: Principal) {
    const refusal = roleRefusal(SUBMIT_AUTH, principal.role, ROUTE);
    if (refusal) throw refusal;
    if (unknownFields.length)
      throw new BadRequestError(
        'VALIDATION_FAILED',
        `The job data takes only token and operation (got ${unknownFields.join(', ')})`,
        [{ field: 'data', message: 'must NOT have additional properties', unknownFields }],
      );
    // BullMQ numbers the jobs it names itself: such a key would meet an older operation's after a queue reset.
    const key = job.id ?? '';
    if (!JOB_ID_PATTERN.test(key) || /^\d+$/.test(key))
      throw new BadRequestError(
        'VALIDATION_FAILED',
        'Add the job with jobId set to its Idempotency-Key: 1-200 characters of A-Z a-z 0-9 . _ -, not only digits',
        [{ field: 'jobId', message: 'must be an idempotency key', pattern: JOB_ID_PATTERN.source }],
      );
    // A copy: applying the schema defaults in place wrote them into the job kept in Redis, and a
    // re-run of the pipeline with the same key then met "another request body" (a new-user trial).
    const { spec, ids, maxIds } = jsonSubmission(structuredClone(data.operation), 'operation');
    const result = await deps.operations.submit({
      spec,
      ids,
      maxIds,
      idempotencyKey: key,
      principal,
      via: { via: 'intake', jobId: key },
    });
    if (result.kind === 'planned') metrics?.intakeJobs.inc({ outcome: result.replayed ? 'replayed' : 'planned' });
    if (result.kind === 'dry_run') metrics?.intakeJobs.inc({ outcome: 'dry_run' });
    return outcomeOf(result);
  }

  /** Records a refusal (unless the planner recorded it: a rejected plan) and turns it into the failedReason. */
  async function refuse(job: Job, err: AppError, principal: Principal | undefined): Promise<IntakeRefusal> {
    const rejected = err.code === 'PLAN_REJECTED';
    const operationId = (err.details as { operationId?: string | null } | undefined)?.operationId ?? null;
    metrics?.intakeJobs.inc({ outcome: rejected ? 'rejected' : 'refused' });
    // Like the route: the planner records a rejection it stored; a dry run's is recorded as a refusal.
    if (!(rejected && operationId))
      await auditAlone(pool, {
        actor: principal?.name ?? 'anonymous',
        action: 'intake.refused',
        outcome: 'refused',
        payload: {
          route: ROUTE,
          jobId: job.id ?? null,
          code: err.code,
          status: err.statusCode,
          tokenId: principal?.tokenId ?? null,
        },
      }).catch((e: unknown) => log.warn({ err: e, jobId: job.id }, 'could not audit a refused intake job'));
    if (rejected) return new IntakeRefusal({ code: err.code, message: err.message, operationId, report: err.details });
    return new IntakeRefusal({
      code: err.code,
      message: err.message,
      // The route's status for it: a 400 is the job's input (the CLI exits 2 for it, as for REST's).
      status: err.statusCode,
      ...(err.details === undefined ? {} : { details: err.details }),
    });
  }

  /**
   * Processes one job. `later(ms)` puts it back for a retry (the worker's step-job pattern) and
   * never returns; a refusal throws IntakeRefusal.
   */
  async function process(job: Job, later: (delayMs: number) => Promise<never>): Promise<IntakeResult> {
    const raw = job.data as unknown;
    const obj = raw && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
    const jobId = job.id ?? '';
    const secret =
      typeof obj.token === 'string'
        ? obj.token
        : typeof obj.sealedToken === 'string'
          ? openToken(deps.sealKey, obj.sealedToken, jobId)
          : undefined;
    const retries = typeof obj.retries === 'number' ? obj.retries : 0;
    // Only what the job needs is kept, so no field holding the token (or a stray copy) stays behind.
    // The fingerprint is always computed here (one the job was added with is never kept): a kept
    // job must say whose it is, since its outcome is another token's to no one (REST's rule).
    const tokenFingerprint = secret === undefined ? undefined : intakeTokenFingerprint(jobId, secret);
    const kept: IntakeData = {
      operation: obj.operation,
      ...(tokenFingerprint ? { tokenFingerprint } : {}),
      ...(retries ? { retries } : {}),
    };
    const sealed = secret ? { sealedToken: sealToken(deps.sealKey, secret, jobId) } : {};
    const unknownFields = Object.keys(obj).filter((k) => !OWN_FIELDS.includes(k));
    if (raw !== obj || 'token' in obj || obj.tokenFingerprint !== tokenFingerprint || unknownFields.length)
      await job.updateData({ ...kept, ...sealed });
    // The job ends holding neither the token nor its seal.
    const finish = () => ('sealedToken' in job.data || 'token' in job.data ? job.updateData(kept) : undefined);
    let principal: Principal | undefined;
    try {
      const notObject =
        raw === obj ? undefined : raw === null ? 'null' : Array.isArray(raw) ? 'an array' : `a ${typeof raw}`;
      principal = await principalOf(secret, 'token' in obj && typeof obj.token !== 'string', notObject);
      const out = await plan(job, kept, unknownFields, principal);
      await finish();
      return out;
    } catch (err) {
      const transient = isTransient(err) || isPoolExhausted(err) || err instanceof RetryLaterError;
      if (transient && retries < MAX_TRANSIENT_RETRIES) {
        const delayMs = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** retries);
        log.warn({ err, jobId, retries, delayMs }, 'intake job retried: a dependency is down');
        metrics?.intakeJobs.inc({ outcome: 'retried' });
        await job.updateData({ ...kept, ...sealed, retries: retries + 1 });
        return await later(delayMs);
      }
      await Promise.resolve(finish()).catch((e: unknown) =>
        log.warn({ err: e, jobId }, 'could not drop the sealed token of a failed intake job'),
      );
      if (err instanceof AppError && !(err instanceof RetryLaterError)) throw await refuse(job, err, principal);
      metrics?.intakeJobs.inc({ outcome: 'failed' });
      log.warn({ err, jobId }, 'intake job failed');
      const dependency = transient ? dependencyOf(err) : null;
      throw new IntakeRefusal(
        transient
          ? {
              code: 'DEPENDENCY_UNAVAILABLE',
              message: `${dependency ? DEPENDENCY_NAMES[dependency] : 'The database or Redis'} stayed unreachable through ${MAX_TRANSIENT_RETRIES} retries. Remove this job and add it again (with its token) under the same jobId: nothing is planned twice`,
              ...(dependency ? { details: { dependency } } : {}),
            }
          : { code: 'INTERNAL', message: 'Internal error; see the worker log with this jobId' },
      );
    }
  }

  return { process };
}

export type IntakeService = ReturnType<typeof intakeService>;
