// The engine loop without a database or a queue: an in-memory store with real transaction
// semantics (writes are kept only when the transaction commits) and recording effect ports.
// Proves the contract: load once under the lock → decide → guards → persist with audit in one
// transaction → effects after the commit, in order; refusals and failed guards write nothing.
import { describe, expect, it } from 'vitest';
import { AppError, ConflictError } from '../../src/lib/errors.ts';
import {
  createEngine,
  type EffectPorts,
  type EngineStore,
  type GuardRefusal,
} from '../../src/modules/execution/engine.ts';
import type { OperationRecord } from '../../src/modules/execution/state.ts';
import type { Guard, LifecycleState } from '../../src/modules/operations/lifecycle.ts';
import { at, ev, NOW, stats } from './lifecycle.fixtures.ts';

interface Tx {
  writes: string[];
}

function world(
  initial: LifecycleState,
  opts: { guardFails?: Guard; effectsFail?: boolean; effectsHang?: boolean } = {},
) {
  let record: OperationRecord = {
    id: 'op_1',
    version: 1,
    action: 'delete',
    targetType: 'app',
    approvedTenants: [],
    protectionSeen: null,
    mode: 'soft',
    lifecycle: initial,
    waves: [0, 1, 2].map((w) => ({ wave: w, fromSeq: w * 10, toSeq: w * 10 + 10 })),
    wave: undefined,
  };
  const log: string[] = [];
  const committed: string[] = [];
  const refusals: GuardRefusal[] = [];
  const store: EngineStore<Tx> = {
    async transaction(fn) {
      const tx: Tx = { writes: [] };
      log.push('begin');
      const saved = record;
      try {
        const out = await fn(tx);
        committed.push(...tx.writes);
        log.push('commit');
        return out;
      } catch (err) {
        record = saved;
        log.push('rollback');
        throw err;
      }
    },
    async load() {
      log.push('load');
      return structuredClone(record);
    },
    async guard(_tx, _r, g) {
      log.push(`guard:${g}`);
      return opts.guardFails === g ? new ConflictError('PLAN_STALE', 'changed') : null;
    },
    async persist(tx, r, next, change) {
      log.push(`persist:${next.state}`);
      tx.writes.push(`state=${next.state}`, ...change.effects.filter((e) => e.type === 'audit').map((e) => e.action));
      record = { ...r, lifecycle: next, version: r.version + 1 };
      return record.version;
    },
    async refused(_opId, r) {
      log.push('refused');
      refusals.push(r);
    },
  };
  const effects: EffectPorts = {
    async publishHalt(opId) {
      if (opts.effectsFail) throw new Error('redis down');
      log.push(`halt:${opId}`);
    },
    async enqueueWave(job, range) {
      if (opts.effectsFail) throw new Error('redis down');
      // Redis stopped: ioredis holds the command while it reconnects.
      if (opts.effectsHang) await new Promise(() => undefined);
      log.push(`wave:${job.wave}@e${job.epoch}:${range.fromSeq}-${range.toSeq}`);
      return 1;
    },
    async enqueueControl(job) {
      if (opts.effectsFail) throw new Error('redis down');
      log.push(`control:${job.kind}`);
    },
  };
  const warnings: string[] = [];
  const engine = createEngine<Tx>({
    store,
    effects,
    clock: () => NOW,
    log: { warn: (_o, m) => warnings.push(m) },
    effectsWaitMs: 50,
  });
  return { engine, log, committed, warnings, refusals, current: () => record };
}

const op = { name: 'alice', tokenId: 'tok_op' };

describe('the engine loop', () => {
  it('loads once, decides at its clock, persists with the audit, commits, then runs the effects in order', async () => {
    const w = world(at('approved'));
    const a = await w.engine.apply('op_1', ev.start(), op);
    expect(w.log).toEqual([
      'begin',
      'load',
      'guard:plan_fresh',
      'persist:running',
      'commit',
      'wave:0@e2:0-10', // the epoch is the committed version
    ]);
    expect(w.committed).toEqual(['state=running', 'operation.started']);
    expect(a!.state).toMatchObject({ state: 'running', currentWave: 0, waveDeadline: NOW + 3_600_000 });
    expect(a!.version).toBe(2);
  });

  it('raises the halt flag before anything else a halt does', async () => {
    const w = world(at('running'));
    await w.engine.apply('op_1', ev.signal('t1'), op);
    expect(w.log.slice(w.log.indexOf('commit') + 1)).toEqual(['halt:op_1', 'control:rollback']);
  });

  it('a refusal is a 4xx and writes nothing', async () => {
    const w = world(at('planned'));
    await expect(w.engine.apply('op_1', ev.start(), op)).rejects.toMatchObject({
      statusCode: 409,
      code: 'INVALID_TRANSITION',
    });
    expect(w.committed).toEqual([]);
    expect(w.log).not.toContain('persist:running');
    expect(w.log.at(-1)).toBe('rollback');
  });

  it("a worker's stale report is returned as refused, not thrown, and writes nothing", async () => {
    const w = world(at('rolled_back'));
    const a = await w.engine.apply('op_1', ev.settled(1, stats(1, 0)), op, { report: true });
    expect(a!.refused?.code).toBe('INVALID_TRANSITION');
    expect(a!.changed).toBe(false);
    expect(w.committed).toEqual([]);
  });

  it('a no-op decision writes nothing and runs no effect, and returns the loaded state', async () => {
    const w = world(at('running'));
    const a = await w.engine.apply('op_1', ev.outcomes(1, stats(5, 0, 0, 50)), op, { report: true });
    expect(a!.changed).toBe(false);
    expect(a!.state).toEqual(at('running'));
    expect(w.log).toEqual(['begin', 'load', 'commit']);
  });

  it('a failed guard refuses the decision: nothing persisted, no effect', async () => {
    const w = world(at('approved'), { guardFails: 'plan_fresh' });
    await expect(w.engine.apply('op_1', ev.start(), op)).rejects.toMatchObject({ code: 'PLAN_STALE' });
    expect(w.committed).toEqual([]);
    expect(w.log.filter((l) => l.startsWith('wave:'))).toEqual([]);
    expect(w.current().lifecycle.state).toBe('approved');
    // Kept after the rollback, outside it, so the view says why the operation stays approved.
    expect(w.log.slice(-2)).toEqual(['rollback', 'refused']);
    expect(w.refusals).toEqual([
      { command: 'start', state: 'approved', code: 'PLAN_STALE', message: 'changed', by: 'alice', at: NOW },
    ]);
  });

  it('a decision refused by decide() itself (not a guard) keeps no refusal', async () => {
    const w = world(at('planned'));
    await expect(w.engine.apply('op_1', ev.start(), op)).rejects.toMatchObject({ code: 'INVALID_TRANSITION' });
    expect(w.refusals).toEqual([]);
  });

  it('a committed decision stands when its effects cannot run now (Redis down): the reconciler repairs', async () => {
    const w = world(at('approved'), { effectsFail: true });
    const a = await w.engine.apply('op_1', ev.start(), op);
    expect(a!.state.state).toBe('running');
    expect(w.committed).toContain('state=running');
    expect(w.warnings).toEqual(['effects not carried out now; the reconciler will']);
  });

  it('answers with the committed decision when its effects hang (Redis reconnecting), not when they end', async () => {
    const w = world(at('approved'), { effectsHang: true });
    const a = await w.engine.apply('op_1', ev.start(), op);
    expect(a!.state.state).toBe('running');
    expect(w.committed).toContain('state=running');
    expect(w.warnings).toEqual([
      'effects still waiting on Redis; answering now, they finish when it is back (or the reconciler re-derives them)',
    ]);
  });

  it('runs an event source inside the same transaction: its writes commit with the decision, or not at all', async () => {
    const w = world(at('approved'), { guardFails: 'plan_fresh' });
    await expect(
      w.engine.apply(
        'op_1',
        async (tx) => {
          tx.writes.push('ledger outcomes');
          return ev.start();
        },
        op,
      ),
    ).rejects.toBeInstanceOf(AppError);
    expect(w.committed).toEqual([]);

    const ok = world(at('running', { currentWave: 2 }));
    await ok.engine.apply(
      'op_1',
      async (tx) => {
        tx.writes.push('ledger outcomes');
        return ev.settled(2, stats(10, 0));
      },
      op,
      { report: true },
    );
    expect(ok.committed).toEqual(['ledger outcomes', 'state=completed', 'operation.completed']);
  });

  it('an event source that yields nothing decides nothing but still commits its writes', async () => {
    const w = world(at('running'));
    const a = await w.engine.apply(
      'op_1',
      async (tx) => {
        tx.writes.push('ledger outcomes');
        return null;
      },
      op,
    );
    expect(a).toBeNull();
    expect(w.committed).toEqual(['ledger outcomes']);
    expect(w.log).toEqual(['begin', 'commit']);
  });
});
