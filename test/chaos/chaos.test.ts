// The short chaos run for `npm test`: one trial per fault kind (6), against the API and two
// workers as real processes on their own PostgreSQL and Redis (see run.ts for the long run,
// `npm run chaos`). Each trial must end with nothing lost, duplicated or unexpected and not stuck.
// CHAOS_SEED reproduces a failing plan (the seed is in every failure message). Processes that exit
// on their own are reported and restarted, and fail their trial (a worker must outlive a fault;
// CHAOS_ALLOW_CRASH=1 only reports them).
//
// Also here, without any process: the checker itself counts planted violations, so a green chaos
// run means "nothing found", not "nothing looked at".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sign } from '../../src/modules/adapters/signing.ts';
import { startDownstream, type Downstream } from '../support/downstream.ts';
import { check, type World } from './checker.ts';
import { Cluster } from './cluster.ts';
import { FAULTS } from './faults.ts';
import { sleep } from './procs.ts';
import { details, recheck, table, totals } from './report.ts';
import { Rng, randomSeed } from './rng.ts';
import { isStuck, makePlan, runTrial, tagOf, TERMINAL_WAIT_MS, type TrialResult } from './trial.ts';

const seed = Number(process.env.CHAOS_SEED) || randomSeed();
const rng = new Rng(seed);
const plan = makePlan(rng, FAULTS.length, FAULTS);
const ZERO = { lost: 0, duplicated: 0, unexpected: 0, stuck: 0 };

describe(`chaos: one trial per fault kind (CHAOS_SEED=${seed})`, () => {
  let cluster: Cluster | undefined;
  const results: TrialResult[] = [];
  const log = (line: string) => console.log(line);

  beforeAll(async () => {
    cluster = await Cluster.start({
      lockMs: 2_500,
      workerConcurrency: 4,
      workers: 2,
      latencyMs: [5, 25],
      rng: rng.fork(),
      tagOf,
      log,
    });
  }, 240_000);
  afterAll(async () => {
    if (results.length) console.log(`${details(results)}\n\n${table(results)}`);
    await cluster?.close();
  }, 120_000);

  for (const spec of plan) {
    it(
      `${spec.fault} during ${spec.phase}`,
      async () => {
        for (const n of await cluster!.ensureHealthy()) log(`before trial ${spec.index}: ${n}`);
        const r = await runTrial(cluster!, spec, log, results);
        results.push(r);
        const found = { ...r.verdict, stuck: isStuck(r) ? 1 : 0 };
        expect(
          { lost: found.lost, duplicated: found.duplicated, unexpected: found.unexpected, stuck: found.stuck },
          `CHAOS_SEED=${seed}\n${details([r])}`,
        ).toEqual(ZERO);
        if (!['1', 'true', 'yes'].includes(process.env.CHAOS_ALLOW_CRASH ?? ''))
          expect(
            r.crashes.map((x) => x.name),
            `CHAOS_SEED=${seed}\n${details([r])}`,
          ).toEqual([]);
      },
      TERMINAL_WAIT_MS + 150_000,
    );
  }

  it('still holds over the whole history (late calls included)', async () => {
    expect(results.length).toBeGreaterThan(0);
    await sleep(1_000);
    await recheck(cluster!, results);
    expect(totals(results), `CHAOS_SEED=${seed}\n${details(results)}`).toEqual(ZERO);
  }, 120_000);
});

describe('the chaos checker', () => {
  const secret = 'chaos-checker-test-secret-0123456789abcdef';
  let ds: Downstream;
  beforeAll(async () => {
    ds = await startDownstream({ secret });
  });
  afterAll(async () => {
    await ds?.close();
  });

  /** A call as Blastgate's http adapter makes it (signed unless told otherwise). */
  async function call(method: string, path: string, key: string | undefined, body: unknown, signed = true) {
    const text = body === undefined ? '' : JSON.stringify(body);
    const timestamp = Date.now();
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (signed) {
      headers['x-blastgate-timestamp'] = String(timestamp);
      headers['x-blastgate-signature'] = sign(secret, { timestamp, method, host: ds.host, path, body: text });
    }
    if (key) headers['idempotency-key'] = key;
    const r = await fetch(ds.url + path, { method, headers, body: text || undefined });
    await r.text();
    return r.status;
  }

  const world = (bodies: Map<string, Set<string>> = new Map()): World => ({
    calls: ds.calls,
    appliedByKey: ds.appliedByKey,
    stateOf: (id) => ds.state(id),
    bodiesByKey: bodies,
    ownerOf: (id) => (/^app_t(\d+)/.exec(id) ? Number(/^app_t(\d+)/.exec(id)![1]) : undefined),
    trialAt: () => 1,
  });

  it('finds nothing in a clean completed trial, and every planted violation in a bad one', async () => {
    ds.reset();
    const del = (id: string, key: string) => call('POST', `/apps/${id}/soft-delete`, key, { id });
    // trial 1: clean, completed
    const clean = ['app_t1i0', 'app_t1i1'];
    for (const id of clean) await del(id, `k-${id}`);
    const ok = check(world(), {
      index: 1,
      operationId: 'op1',
      ids: clean,
      bystanders: ['app_t1b0'],
      finalState: 'completed',
      ledger: clean.map((resourceId) => ({ resourceId, state: 'done' })),
    });
    expect(ok, ok.problems.join('\n')).toMatchObject({ lost: 0, duplicated: 0, unexpected: 0 });

    // trial 2: one of each violation
    ds.reset();
    await del('app_t2i0', 'k0'); // fine
    // i1: ledger done, never deleted downstream → lost
    await del('app_t2i2', 'k2'); // i2: ledger restored, but still deleted downstream → lost
    await del('app_t2i3', 'k3a');
    await del('app_t2i3', 'k3b'); // i3: deleted under two keys → duplicated
    await del('app_t2i4', 'k4');
    await call('POST', '/apps/app_t2i4/restore', 'k4', { id: 'app_t2i4' }); // same key, another request: 422 → duplicated
    await del('app_t2i5', 'k5'); // i5: the proxy saw two bodies for k5 → duplicated
    await del('app_t2b0', 'kb'); // bystander deleted → unexpected
    await del('app_nobody', 'kn'); // an ID of no trial → unexpected
    await call('GET', '/apps/app_nobody2', undefined, undefined, false); // unsigned → unexpected
    ds.resources.set('app_t2i1', { id: 'app_t2i1', tenantId: 'tn', state: 'active', data: {} });
    const ids = ['app_t2i0', 'app_t2i1', 'app_t2i2', 'app_t2i3', 'app_t2i4', 'app_t2i5'];
    const v = check(world(new Map([['k5', new Set(['a', 'b'])]])), {
      index: 2,
      operationId: 'op2',
      ids,
      bystanders: ['app_t2b0'],
      finalState: 'rollback_incomplete',
      ledger: ids.map((resourceId) => ({ resourceId, state: resourceId === 'app_t2i2' ? 'restored' : 'done' })),
    });
    // trialAt() says trial 1 was running: the no-trial and unsigned calls are trial 1's, not 2's.
    expect(v, v.problems.join('\n')).toMatchObject({ lost: 2, duplicated: 3, unexpected: 1 });
    const t1 = check(world(), {
      index: 1,
      operationId: 'op1',
      ids: [],
      bystanders: [],
      finalState: 'completed',
      ledger: [],
    });
    expect(t1.unexpected, t1.problems.join('\n')).toBe(2);

    // State rules: "completed" with an item not deleted, "rolled_back" with one still deleted.
    const completed = check(world(), {
      index: 2,
      operationId: 'op2',
      ids: ['app_t2i0', 'app_t2i1'],
      bystanders: [],
      finalState: 'completed',
      ledger: undefined,
    });
    expect(completed.lost, completed.problems.join('\n')).toBe(1);
    const rolledBack = check(world(), {
      index: 2,
      operationId: 'op2',
      ids: ['app_t2i0', 'app_t2i1'],
      bystanders: [],
      finalState: 'rolled_back',
      ledger: undefined,
    });
    expect(rolledBack.lost, rolledBack.problems.join('\n')).toBe(1);
  });

  it('expects the restore drill: its restore + re-delete under drill keys is no violation; a drilled item left live is lost', async () => {
    ds.reset();
    const ids = ['app_t1i0', 'app_t1i1'];
    for (const id of ids) await call('POST', `/apps/${id}/soft-delete`, `k-${id}`, { id });
    await call('POST', '/apps/app_t1i0/restore', 'bg1-drill-restore-a', { id: 'app_t1i0' });
    await call('POST', '/apps/app_t1i0/soft-delete', 'bg1-drill-softDelete-a', { id: 'app_t1i0' });
    const subject = {
      index: 1,
      operationId: 'op1',
      ids,
      bystanders: [],
      finalState: 'completed',
      ledger: ids.map((resourceId) => ({ resourceId, state: 'done' })),
    };
    const ok = check(world(), subject);
    expect(ok, ok.problems.join('\n')).toMatchObject({ lost: 0, duplicated: 0, unexpected: 0 });

    // The drill restored it and never deleted it again, while the ledger says done.
    ds.reset();
    for (const id of ids) await call('POST', `/apps/${id}/soft-delete`, `k-${id}`, { id });
    await call('POST', '/apps/app_t1i0/restore', 'bg1-drill-restore-b', { id: 'app_t1i0' });
    const live = check(world(), { ...subject, finalState: 'completed_with_failures' });
    expect(live.lost, live.problems.join('\n')).toBe(1);
    expect(live.problems.join('\n')).toMatch(/restore drill left it live/);
  });
});
