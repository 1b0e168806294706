// A CI intake job whose database is down is retried later without its token in Redis: the token
// is sealed in the meantime (and authenticated anew on the retry), and the finished job holds
// neither. A refusal is never retried.
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { intakeService, MAX_TRANSIENT_RETRIES } from '../../src/modules/intake/service.ts';
import { intakeSealKey, openToken, sealToken } from '../../src/modules/intake/token-seal.ts';
import { intakeTokenFingerprint } from '../../src/cli/token-fingerprint.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import type { Principal } from '../../src/modules/auth/roles.ts';

const TOKEN = 'bg_secret_requester_token_0123456789';
const key = intakeSealKey(TEST_SNAPSHOT_KEY_BYTES);
const principal: Principal = { tokenId: 'tok_1', name: 'ci', role: 'requester', scope: null };
const body = { targetType: 'app', reason: 'Remove the app', ticket: 'CHG-1', ids: ['app_1'] };
const down = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const quiet = { info: () => undefined, warn: () => undefined };

/** A job as BullMQ hands it over; every data write is recorded (what Redis would hold). */
function fakeJob(data: unknown) {
  const writes: unknown[] = [];
  const job = {
    id: 'ci-retry-1',
    data,
    updateData(d: unknown) {
      job.data = d;
      writes.push(JSON.parse(JSON.stringify(d)));
      return Promise.resolve();
    },
  };
  return { job: job as unknown as Job, writes };
}

function service(failures: number, authenticated: string[], fail: () => Error = down) {
  let calls = 0;
  return intakeService({
    pool: undefined as never,
    auth: {
      authenticate: (secret: string) => {
        authenticated.push(secret);
        return Promise.resolve(principal);
      },
    },
    operations: {
      submit: () => {
        if (calls++ < failures) return Promise.reject(fail());
        return Promise.resolve({
          kind: 'planned',
          replayed: false,
          operation: { id: 'op_1', state: 'planned', planHash: 'h', plan: { itemCount: 1 } } as never,
        });
      },
    },
    sealKey: key,
    log: quiet,
  });
}

const later = (delays: number[]) => (ms: number) => {
  delays.push(ms);
  return Promise.reject(new DelayedError());
};

describe('the intake token seal', () => {
  it('opens only for the job it was sealed for, with the key it was sealed with', () => {
    const sealed = sealToken(key, TOKEN, 'job-a');
    expect(sealed).not.toContain(TOKEN);
    expect(openToken(key, sealed, 'job-a')).toBe(TOKEN);
    expect(openToken(key, sealed, 'job-b')).toBeUndefined();
    expect(openToken(intakeSealKey(Buffer.alloc(32, 7)), sealed, 'job-a')).toBeUndefined();
    expect(openToken(key, 'garbage', 'job-a')).toBeUndefined();
  });
});

describe('an intake job while the database is down', () => {
  it('is put back with backoff holding only the sealed token, authenticates again on the retry, and ends with neither', async () => {
    const authenticated: string[] = [];
    const svc = service(2, authenticated);
    const { job, writes } = fakeJob({ token: TOKEN, operation: body });
    const delays: number[] = [];
    await expect(svc.process(job, later(delays))).rejects.toBeInstanceOf(DelayedError);
    await expect(svc.process(job, later(delays))).rejects.toBeInstanceOf(DelayedError);
    const result = await svc.process(job, later(delays));
    expect(result).toMatchObject({ operationId: 'op_1', state: 'planned' });
    expect(delays).toEqual([1000, 2000]);
    // Every retry authenticated with the token again (a revoked token would be refused then).
    expect(authenticated).toEqual([TOKEN, TOKEN, TOKEN]);
    // No write ever carried the token itself; the first write already replaced it with the seal.
    for (const w of writes) expect(JSON.stringify(w)).not.toContain(TOKEN);
    expect(writes[0]).toHaveProperty('sealedToken');
    // Whose token it was stays, as a fingerprint (never the token): a kept job says whose it is.
    expect(job.data).toEqual({
      operation: body,
      tokenFingerprint: intakeTokenFingerprint('ci-retry-1', TOKEN),
      retries: 2,
    });
  });

  it('gives up after the last retry with DEPENDENCY_UNAVAILABLE, the seal dropped', async () => {
    const svc = service(Infinity, []);
    const { job } = fakeJob({ token: TOKEN, operation: body, retries: MAX_TRANSIENT_RETRIES });
    const err = await svc.process(job, later([])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    const refusal = JSON.parse((err as Error).message) as Record<string, unknown>;
    // A refused connection alone does not say to what: the message names both, no details.
    expect(refusal).toMatchObject({
      code: 'DEPENDENCY_UNAVAILABLE',
      message: expect.stringMatching(/^The database or Redis/),
    });
    expect(refusal.details).toBeUndefined();
    expect(job.data).toEqual({
      operation: body,
      tokenFingerprint: intakeTokenFingerprint('ci-retry-1', TOKEN),
      retries: MAX_TRANSIENT_RETRIES,
    });
  });

  it("names PostgreSQL when the error tells (its client marks its failures; here pg's own message)", async () => {
    const svc = service(Infinity, [], () => new Error('Connection terminated unexpectedly'));
    const { job } = fakeJob({ token: TOKEN, operation: body, retries: MAX_TRANSIENT_RETRIES });
    const err = await svc.process(job, later([])).catch((e: unknown) => e);
    expect(JSON.parse((err as Error).message)).toMatchObject({
      code: 'DEPENDENCY_UNAVAILABLE',
      message: expect.stringMatching(/^PostgreSQL stayed unreachable through/),
      details: { dependency: 'postgres' },
    });
  });
});
