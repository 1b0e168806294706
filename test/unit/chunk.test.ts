// The chunk job without a database, a queue or Redis: every dependency is a typed fake (the
// ChunkDeps Picks), so a change of a real module's surface breaks this at compile time. Proves
// the rules a chunk keeps: stale jobs do nothing; an item never runs past its attempt budget and
// fails with what went wrong; an adapter that cannot be built fails the items at once; a failure
// before any call hands the items back with the reason; velocity grants a prefix and refunds what
// was not sent; nothing is sent after the fence or the claim is lost; an interrupted call is sent
// again instead of being recorded failed.
import { describe, expect, it } from 'vitest';
import { UnprocessableError } from '../../src/lib/errors.ts';
import { SKIPPED, type AdapterItem, type ItemResult, type TargetAdapter } from '../../src/modules/adapters/types.ts';
import { processChunk, type ChunkDeps } from '../../src/modules/execution/chunk.ts';
import type { ClaimedItem, Ledger, Outcome } from '../../src/modules/execution/ledger.ts';
import type { OperationRecord } from '../../src/modules/execution/state.ts';
import type { VelocityGrant } from '../../src/modules/execution/velocity.ts';
import { decide, type LifecycleEvent } from '../../src/modules/operations/lifecycle.ts';
import { foldOutcomes, type WaveStats } from '../../src/modules/operations/wave-health.ts';
import { at, NOW } from './lifecycle.fixtures.ts';
import { callSlots } from '../../src/modules/execution/call-slots.ts';

type Tx = { tx: true };
interface Item extends ClaimedItem {
  state: string;
  token: string | null;
}

function harness(o: {
  n?: number;
  attempts?: number;
  result?: (item: AdapterItem, calls: number) => ItemResult | Promise<ItemResult>;
  adapterError?: Error;
  granted?: number;
  prepareFails?: boolean;
  /** Only the k-th write-ahead mark (1-based) fails. */
  prepareFailsAt?: number;
  stopMarking?: boolean;
  extendReturns?: number;
  leaseMs?: number;
  concurrency?: number;
  state?: Parameters<typeof at>[0];
  /** A compliance erasure: hardDelete, and keys destroyed with the items recorded done. */
  erase?: boolean;
  eraseFails?: boolean;
  /** Items an earlier run marked write-ahead (it may have sent them). */
  markedBefore?: number[];
  /** How often the chunk records what has landed while its calls are out (0: at every landing). */
  progressEveryMs?: number;
}) {
  const n = o.n ?? 4;
  const items = new Map<number, Item>();
  for (let seq = 0; seq < n; seq++) {
    items.set(seq, {
      seq,
      resourceId: `app_${seq}`,
      tenantId: `t${seq % 2}`,
      type: null,
      snapshotId: null,
      sourceSnapshotId: null,
      descendants: [],
      executedSeq: o.markedBefore?.includes(seq) ? 900 + seq : null,
      attempts: o.attempts ?? 0,
      lastError: o.attempts ? 'HTTP 503' : null,
      state: 'pending',
      token: null,
    });
  }
  let wave: WaveStats = { done: 0, failed: 0, consecutiveFailures: 0, pending: n };
  const events: LifecycleEvent[] = [];
  const calls: string[] = [];
  /** Marks and calls, in the order they happened. */
  const log: string[] = [];
  let prepares = 0;
  const released: { seqs: number[]; error: string | null; uncount: boolean }[] = [];
  const refunds: number[] = [];
  const requeues: number[] = [];
  const actions: string[] = [];
  const txs: { record: Tx[]; erase: Tx[] } = { record: [], erase: [] };
  const erased: number[][] = [];
  /** Each record of outcomes: the items failed unapplied, and the marks this run set (as handed to the ledger). */
  const records: { seqs: number[]; unapplied: number[]; marked: number[] }[] = [];
  const base = at('running');
  const lifecycle = at(o.state ?? 'running', {
    currentWave: 0,
    haltPolicy: { ...base.haltPolicy, probe: 'optional' },
    rollout: { ...base.rollout, concurrency: o.concurrency ?? base.rollout.concurrency },
  });
  const record: OperationRecord = {
    id: 'op_1',
    version: 3,
    action: o.erase ? 'erase' : 'delete',
    targetType: 'app',
    approvedTenants: [],
    protectionSeen: null,
    mode: o.erase ? 'hard' : 'soft',
    lifecycle: o.erase ? { ...lifecycle, kind: 'erase' } : lifecycle,
    waves: [{ wave: 0, fromSeq: 0, toSeq: n }],
    wave: { wave: 0, fromSeq: 0, toSeq: n, ...wave },
  };
  const ledger: Pick<Ledger<Tx>, 'claim' | 'extend' | 'release' | 'prepare' | 'record' | 'waveStats'> = {
    async claim(_op, _r, _job, token) {
      const out: ClaimedItem[] = [];
      for (const i of items.values()) {
        if (i.state !== 'pending') continue;
        Object.assign(i, { state: 'claimed', token, attempts: i.attempts + 1 });
        out.push({ ...i });
      }
      return out;
    },
    async extend() {
      return o.extendReturns ?? [...items.values()].filter((i) => i.state === 'claimed').length;
    },
    async release(_op, _r, token, list, error, uncount) {
      released.push({ seqs: list.map((i) => i.seq), error, uncount });
      for (const c of list) {
        const i = items.get(c.seq)!;
        if (i.token !== token) continue;
        Object.assign(i, {
          state: 'pending',
          token: null,
          lastError: error ?? i.lastError,
          attempts: i.attempts - (uncount ? 1 : 0),
        });
      }
    },
    async prepare(_op, _w, _r, token, snaps, seqs) {
      if (o.prepareFails || ++prepares === o.prepareFailsAt) throw new Error('could not store the snapshots');
      log.push(`mark ${seqs[0]}-${seqs.at(-1)}`);
      if (o.stopMarking) return new Set();
      for (const s of snaps) items.get(s.seq)!.snapshotId = 100 + s.seq;
      const ok = seqs.filter((s) => items.get(s)!.token === token);
      for (const s of ok) items.get(s)!.executedSeq ??= 1000 + s;
      return new Set(ok);
    },
    async record(tx, _op, _w, token, outcomes: Outcome[], marked, _now, follow) {
      txs.record.push(tx);
      records.push({
        seqs: outcomes.map((x) => x.seq),
        unapplied: outcomes.filter((x) => x.unapplied).map((x) => x.seq),
        marked: [...marked].sort((a, b) => a - b),
      });
      const verdicts: ('done' | 'failed')[] = [];
      const doneSeqs: number[] = [];
      for (const oc of outcomes) {
        const i = items.get(oc.seq)!;
        if (i.state !== 'claimed' || i.token !== token) continue;
        Object.assign(i, { state: oc.state, token: null, lastError: oc.error ?? i.lastError });
        if (oc.state === 'pending' && !oc.sent) i.attempts--;
        if (oc.state !== 'pending') verdicts.push(oc.state);
        if (oc.state === 'done') doneSeqs.push(oc.seq);
      }
      const counts = {
        recordedDone: verdicts.filter((v) => v === 'done').length,
        recordedFailed: verdicts.filter((v) => v === 'failed').length,
        descendantsDone: 0,
        doneSeqs,
      };
      await follow?.(counts);
      wave = foldOutcomes(wave, verdicts);
      return { stats: wave, ...counts };
    },
    async waveStats() {
      return wave;
    },
  };
  let perItemCalls = 0;
  const adapter: TargetAdapter = {
    kind: 'http',
    cascade: 'downstream',
    system: 'http://apps.internal',
    async snapshot(list) {
      return list.map((i) => ({ ok: true, data: { id: i.resourceId } }));
    },
    async apply(action, list, opts) {
      actions.push(action);
      const out: ItemResult[] = [];
      for (const i of list) {
        if (!opts.shouldContinue()) {
          out.push(SKIPPED);
          continue;
        }
        calls.push(i.resourceId);
        log.push(`call ${i.resourceId}`);
        out.push(await (o.result?.(i, ++perItemCalls) ?? { ok: true }));
      }
      return out;
    },
    async probe() {
      return { result: 'healthy' };
    },
  };
  let fenceLost = false;
  const deps: ChunkDeps<Tx> = {
    load: async () => structuredClone(record),
    slots: callSlots(),
    ledger,
    engine: {
      async apply(_op, source) {
        const e = typeof source === 'function' ? await source({ tx: true }) : source;
        if (!e) return null;
        events.push(e);
        const d = decide(record.lifecycle, e, NOW);
        if (!d.ok) return null;
        return { record, state: d.next, effects: d.effects, changed: d.effects.length > 0, version: 4 };
      },
    },
    adapters: {
      get: async () => {
        if (o.adapterError) throw o.adapterError;
        return { adapter, hasProbe: true };
      },
    },
    watch: {
      track: async () => undefined,
      untrack: () => undefined,
      canRun: () => !fenceLost,
      runs: () => !fenceLost,
    },
    velocity: {
      async reserve(opId, list) {
        const count = typeof list === 'number' ? list : list.length;
        const granted = Math.min(count, o.granted ?? count);
        return {
          opId,
          window: 1,
          requested: count,
          granted,
          waitMs: granted < count ? 30_000 : 0,
          limitedBy: granted < count ? 'items' : null,
          newTenants: [],
        } satisfies VelocityGrant;
      },
      async refund(_g, k) {
        refunds.push(k);
      },
    },
    requeue: async (_j, delayMs) => {
      requeues.push(delayMs);
    },
    clock: () => NOW,
    leaseMs: o.leaseMs ?? 30_000,
    ...(o.progressEveryMs === undefined ? {} : { progressEveryMs: o.progressEveryMs }),
    ...(o.erase
      ? {
          async eraseKeys(tx: Tx, _op: string, seqs: number[]) {
            txs.erase.push(tx);
            if (o.eraseFails) throw new Error('connection lost');
            erased.push(seqs);
            return { items: seqs.length, descendants: 0, keys: seqs.length };
          },
        }
      : {}),
  };
  const job = { opId: 'op_1', epoch: 3, wave: 0, from: 0, to: n };
  const fence = { lost: false };
  return {
    run: () => processChunk(deps, 'job_1', job, fence),
    items,
    actions,
    txs,
    erased,
    records,
    events,
    calls,
    log,
    released,
    refunds,
    requeues,
    loseFence: () => {
      fence.lost = true;
      fenceLost = true;
    },
  };
}

const states = (h: ReturnType<typeof harness>) => [...h.items.values()].map((i) => i.state);

describe('processChunk', () => {
  it('sends each item once, records the outcomes and settles the wave in the same step', async () => {
    const h = harness({});
    await h.run();
    expect(h.calls).toEqual(['app_0', 'app_1', 'app_2', 'app_3']);
    expect(states(h)).toEqual(['done', 'done', 'done', 'done']);
    expect(h.events).toEqual([
      { type: 'wave_settled', wave: 0, stats: { done: 4, failed: 0, consecutiveFailures: 0, pending: 0 } },
    ]);
    for (const i of h.items.values()) expect(i.snapshotId).not.toBeNull();
  });

  it('does nothing for an operation that is not running (a stale job): nothing claimed, nothing sent', async () => {
    const h = harness({ state: 'paused' });
    await h.run();
    expect(h.calls).toEqual([]);
    expect(states(h)).toEqual(['pending', 'pending', 'pending', 'pending']);
  });

  it('fails an item that used up its attempts, with its last error, without calling anyone', async () => {
    const h = harness({ attempts: 5 });
    await h.run();
    expect(h.calls).toEqual([]);
    expect(states(h)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(h.items.get(0)!.lastError).toBe('gave up after 5 attempts; last error: HTTP 503');
  });

  it('fails the items at once when the type has no working adapter, saying why', async () => {
    const h = harness({
      adapterError: new UnprocessableError('ADAPTER_CONFIG_INVALID', 'Invalid http adapter config: /baseUrl'),
    });
    await h.run();
    expect(h.calls).toEqual([]);
    expect(states(h)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(h.items.get(2)!.lastError).toBe('adapter for type app unavailable: Invalid http adapter config: /baseUrl');
  });

  it('hands the items back with the reason when something fails before any call (the attempt counts), and rethrows', async () => {
    const h = harness({ prepareFails: true });
    await expect(h.run()).rejects.toThrow('could not store the snapshots');
    expect(h.calls).toEqual([]);
    expect(states(h)).toEqual(['pending', 'pending', 'pending', 'pending']);
    expect(h.released).toEqual([{ seqs: [0, 1, 2, 3], error: 'could not store the snapshots', uncount: false }]);
    expect(h.items.get(0)!.attempts).toBe(1);
  });

  it('runs only what the velocity cap grants, hands the rest back uncounted and asks again soon', async () => {
    const h = harness({ granted: 3 });
    await h.run();
    expect(h.calls).toEqual(['app_0', 'app_1', 'app_2']);
    expect(h.released).toEqual([{ seqs: [3], error: null, uncount: true }]);
    expect(h.items.get(3)).toMatchObject({ state: 'pending', attempts: 0 });
    expect(h.requeues).toEqual([5_000]); // asks again at least every 5 s
  });

  it('sends nothing when the operation stopped before the write-ahead mark', async () => {
    const h = harness({ stopMarking: true });
    await h.run();
    expect(h.calls).toEqual([]);
    expect(states(h)).toEqual(['pending', 'pending', 'pending', 'pending']);
    expect(h.refunds).toEqual([4]); // the caps charge executed items only
  });

  it('stops sending the moment its fence is lost, and refunds what it did not send', async () => {
    const h: ReturnType<typeof harness> = harness({
      result: (_i, k) => {
        if (k === 2) h.loseFence();
        return { ok: true };
      },
    });
    await h.run();
    expect(h.calls).toEqual(['app_0', 'app_1']);
    expect(states(h)).toEqual(['done', 'done', 'pending', 'pending']);
    expect(h.refunds).toEqual([2]);
  });

  it('stops sending when its claim is no longer renewed', async () => {
    const h = harness({
      leaseMs: 300,
      extendReturns: 0,
      concurrency: 1,
      result: () => new Promise((r) => setTimeout(() => r({ ok: true }), 120)),
    });
    await h.run();
    expect(h.calls.length).toBeGreaterThan(0);
    expect(h.calls.length).toBeLessThan(4);
  });

  it('sends an interrupted item again later instead of recording a failure (its outcome is unknown)', async () => {
    const h = harness({
      result: (i) =>
        i.resourceId === 'app_1'
          ? {
              ok: false,
              permanent: false,
              interrupted: true,
              error: 'stopped before retry; last attempt: timeout after 2000 ms',
            }
          : { ok: true },
    });
    await h.run();
    expect(states(h)).toEqual(['done', 'pending', 'done', 'done']);
    expect(h.items.get(1)).toMatchObject({ attempts: 1, lastError: expect.stringMatching(/^stopped before retry/) });
    expect(h.items.get(1)!.executedSeq).not.toBeNull(); // it may have been applied: the mark stays
    expect(h.events).toEqual([]); // nothing failed, and the wave is not settled
    expect(h.requeues).toEqual([50]);
  });

  it('records a failure that changed nothing with the marks this run set, so the ledger can clear them', async () => {
    const refused: ItemResult = { ok: false, permanent: true, error: 'HTTP 422', status: 422, unapplied: true };
    // app_1 and app_2 are refused outright; app_2 was marked by an earlier run (it may have sent it).
    for (const progressEveryMs of [undefined, 0]) {
      const h = harness({
        markedBefore: [2],
        result: (i) => (i.resourceId === 'app_1' || i.resourceId === 'app_2' ? refused : { ok: true }),
        ...(progressEveryMs === undefined ? {} : { progressEveryMs }),
      });
      await h.run();
      expect(states(h)).toEqual(['done', 'failed', 'failed', 'done']);
      // Whether recorded at the chunk's end or while its other calls were out (progress), each record
      // carries the marks this run set: app_2's mark is an earlier run's, so it is not among them.
      for (const r of h.records) expect(r.marked).toEqual([0, 1, 3]);
      expect(h.records.flatMap((r) => r.unapplied).sort()).toEqual([1, 2]);
      if (progressEveryMs === 0) expect(h.records.length).toBeGreaterThan(1);
    }
  });
});

describe('processChunk of a chunk larger than its lead (the first 100 items go out while the rest is prepared)', () => {
  const seqOf = (line: string) => Number(line.slice('call app_'.length));

  it('sends no item before its own snapshot and mark, and the lead before the rest is marked', async () => {
    const h = harness({ n: 250 });
    await h.run();
    expect(h.log.filter((l) => l.startsWith('mark'))).toEqual(['mark 0-99', 'mark 100-249']);
    const restMarked = h.log.indexOf('mark 100-249');
    const before = h.log.slice(0, restMarked).filter((l) => l.startsWith('call'));
    expect(before.length).toBeGreaterThan(0); // pipelined: the lead was out before the rest was marked
    expect(before.every((l) => seqOf(l) < 100)).toBe(true);
    for (const item of h.items.values()) expect(item.snapshotId).not.toBeNull();
    expect(h.calls).toHaveLength(250);
    expect(new Set(h.calls).size).toBe(250);
    expect(states(h).every((x) => x === 'done')).toBe(true);
    expect(h.events).toEqual([
      { type: 'wave_settled', wave: 0, stats: { done: 250, failed: 0, consecutiveFailures: 0, pending: 0 } },
    ]);
  });

  it('judges both parts with one breaker: failures of the lead stop the rest from being sent', async () => {
    const h = harness({ n: 250, result: () => ({ ok: false, permanent: false, error: 'HTTP 503', status: 503 }) });
    await h.run();
    expect(h.calls.length).toBeGreaterThan(0);
    expect(h.calls.filter((c) => seqOf(`call ${c}`) >= 100)).toEqual([]);
    expect(h.events.at(-1)).toMatchObject({ type: 'item_outcomes' });
  });

  it('a call that throws (not a failed outcome) stops both parts from sending more, and the chunk fails once nothing is out', async () => {
    const h = harness({
      n: 250,
      result: (i) => {
        if (i.resourceId === 'app_3') throw new Error('adapter bug');
        return { ok: true };
      },
    });
    await expect(h.run()).rejects.toThrow('adapter bug');
    const atFailure = h.calls.length;
    await new Promise((r) => setTimeout(r, 50));
    expect(h.calls.length).toBe(atFailure); // it failed once nothing was out
    // It stopped sending soon after (not all 250 items, as without the trip).
    expect(h.calls.length).toBeLessThan(100);
  });

  it('a failure marking the rest stops the lead, lets its calls land, and fails the chunk without handing items back', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const h = harness({
      n: 250,
      prepareFailsAt: 2,
      // The lead's calls are still out when the rest's mark fails.
      result: async () => {
        await held;
        return { ok: true };
      },
    });
    const run = h.run();
    let released = false;
    setTimeout(() => {
      released = true;
      release();
    }, 50);
    await expect(run).rejects.toThrow('could not store the snapshots');
    expect(released).toBe(true); // it failed only once the calls out had landed
    const atFailure = h.calls.length;
    await new Promise((r) => setTimeout(r, 100));
    expect(h.calls.length).toBe(atFailure); // and nothing was sent after it failed
    expect(h.calls.length).toBeGreaterThan(0);
    expect(h.calls.length).toBeLessThan(100); // only what was in flight: no more were sent
    expect(h.calls.every((c) => seqOf(`call ${c}`) < 100)).toBe(true);
    // Calls went out: nothing is released; the claim's lease decides who sends them again.
    expect(h.released).toEqual([]);
  });
});

describe('processChunk of a compliance erasure', () => {
  it('hard-deletes, and destroys keys of exactly the items recorded done, in the transaction that records them', async () => {
    const h = harness({
      erase: true,
      result: (i) => (i.resourceId === 'app_1' ? { ok: false, permanent: true, error: 'HTTP 404' } : { ok: true }),
    });
    await h.run();
    expect(new Set(h.actions)).toEqual(new Set(['hardDelete']));
    expect(states(h)).toEqual(['done', 'failed', 'done', 'done']);
    // The failed item keeps its keys: its hard delete did not succeed.
    expect(h.erased).toEqual([[0, 2, 3]]);
    expect(h.txs.erase).toHaveLength(1);
    expect(h.txs.erase[0]).toBe(h.txs.record[0]);
  });

  it('destroys no key when no item was done (every hard delete failed)', async () => {
    const h = harness({ erase: true, result: () => ({ ok: false, permanent: true, error: 'HTTP 500' }) });
    await h.run();
    expect(states(h)).toEqual(['failed', 'failed', 'failed', 'failed']);
    expect(h.txs.erase).toEqual([]);
  });

  it('a key eraser that fails fails the recording step (its transaction), so done is never committed alone', async () => {
    const h = harness({ erase: true, eraseFails: true });
    await expect(h.run()).rejects.toThrow('connection lost');
    expect(h.erased).toEqual([]);
  });

  it('a delete never destroys keys', async () => {
    const h = harness({});
    await h.run();
    expect(new Set(h.actions)).toEqual(new Set(['softDelete']));
    expect(h.txs.erase).toEqual([]);
  });
});
