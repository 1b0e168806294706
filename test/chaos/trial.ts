// One chaos trial: register fresh tenants and resources (in the registry and the downstream),
// submit → approve (another token, with the planHash) → start an operation, then at a random point
// of progress inject one fault — during the deletes, or during a rollback requested mid-run — and
// wait (bounded) for a terminal state; then read the ledger and run the checker.
import { check, TERMINAL_STATES, type LedgerItem, type Verdict, type World } from './checker.ts';
import { ApiUnreachable, type Cluster } from './cluster.ts';
import { FAULTS, inject, type FaultKind } from './faults.ts';
import type { ExitRecord } from './procs.ts';
import { sleep } from './procs.ts';
import type { Rng } from './rng.ts';

export type Phase = 'delete' | 'rollback';

export interface TrialSpec {
  index: number;
  fault: FaultKind;
  phase: Phase;
  rng: Rng;
  items: number;
  tenants: number;
  bakeSeconds: number;
  /** Share of the items soft-deleted downstream when the fault (delete phase) or the rollback comes. */
  deleteAt: number;
  /** Rollback phase: share of the deleted items restored when the fault comes. */
  restoreAt: number;
}

export interface TrialResult {
  spec: TrialSpec;
  tag: string;
  operationId?: string;
  ids: string[];
  bystanders: string[];
  startedAt: number;
  endedAt: number;
  injectedAtMs?: number;
  faultNote: string;
  phaseNote: string;
  finalState?: string;
  /** The state read again at the end of the run, when it differs from finalState. */
  laterState?: string;
  /** State changes seen by polling, with ms since start. */
  states: string[];
  haltReason?: string | null;
  terminal: boolean;
  terminalAt?: number;
  ledger?: LedgerItem[];
  counts: Record<string, number>;
  crashes: ExitRecord[];
  verdict: Verdict;
  error?: string;
}

/** How long a trial may take to reach a terminal state after its fault. */
export const TERMINAL_WAIT_MS = 90_000;
const ROLLOUT_CONCURRENCY = 4;

export const tagOf = (resourceId: string) => /^app_(t\d+)[ib]\d+$/.exec(resourceId)?.[1];
export const trialOfTag = (tag: string | undefined) => (tag === undefined ? undefined : Number(tag.slice(1)));

/** The run's plan: fault kinds shuffled per cycle; each kind alternates phases across cycles. */
export function makePlan(rng: Rng, trials: number, faults: readonly FaultKind[] = FAULTS): TrialSpec[] {
  const flip = rng.int(0, 1);
  const specs: TrialSpec[] = [];
  let order: FaultKind[] = [];
  for (let i = 0; i < trials; i++) {
    const pos = i % faults.length;
    const cycle = Math.floor(i / faults.length);
    if (pos === 0) order = rng.shuffle(faults);
    const fault = order[pos]!;
    const phase: Phase = (faults.indexOf(fault) + cycle + flip) % 2 === 0 ? 'delete' : 'rollback';
    const r = rng.fork();
    specs.push({
      index: i,
      fault,
      phase,
      rng: r,
      items: r.int(150, 300),
      tenants: r.int(20, 40),
      bakeSeconds: r.int(0, 1),
      deleteAt: phase === 'delete' ? r.float(0.05, 0.9) : r.float(0.15, 0.65),
      restoreAt: r.float(0, 0.7),
    });
  }
  return specs;
}

/** Polls the operation's state in the background, keeping the sequence of states it went through. */
class OpWatcher {
  state: string | undefined;
  haltReason: string | null | undefined;
  states: string[] = [];
  terminalAt: number | undefined;
  unreachable = 0;
  private stopped = false;
  private loop: Promise<void>;

  constructor(
    private c: Cluster,
    private id: string,
    private t0: number,
  ) {
    this.loop = this.run();
  }

  private async run() {
    while (!this.stopped) {
      await this.poll();
      await sleep(200);
    }
  }

  async poll() {
    try {
      const r = await this.c.request('GET', `/v1/operations/${this.id}`, {
        token: this.c.tokens.viewer,
        timeoutMs: 5_000,
      });
      if (r.status !== 200) return;
      const st = r.body.state as string;
      this.haltReason = r.body.haltReason as string | null;
      if (st !== this.state) {
        this.state = st;
        this.states.push(`${st}@${Date.now() - this.t0}`);
        if (TERMINAL_STATES.has(st) && this.terminalAt === undefined) this.terminalAt = Date.now();
      }
    } catch (err) {
      if (!(err instanceof ApiUnreachable)) throw err;
      this.unreachable++;
    }
  }

  get terminal() {
    return this.state !== undefined && TERMINAL_STATES.has(this.state);
  }

  async stop() {
    this.stopped = true;
    await this.loop;
  }
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) return false;
    await sleep(5);
  }
  return true;
}

/** POST a command, tolerating an API that is down or restarting: retried until it is answered. */
async function command(c: Cluster, role: 'approver' | 'operator' | 'admin', id: string, path: string, body: unknown) {
  return c.call('POST', `/v1/operations/${id}/${path}`, { token: c.tokens[role], body, deadlineMs: 60_000 });
}

export async function readLedger(c: Cluster, id: string): Promise<LedgerItem[]> {
  const items: LedgerItem[] = [];
  let cursor: string | null = null;
  for (;;) {
    const q: string = cursor === null ? '' : `&cursor=${cursor}`;
    const r = await c.call('GET', `/v1/operations/${id}/items?limit=1000${q}`, {
      token: c.tokens.viewer,
      deadlineMs: 60_000,
    });
    if (r.status !== 200) throw new Error(`GET items: ${r.status} ${JSON.stringify(r.body)}`);
    for (const it of r.body.items as { resourceId: string; state: string; lastError?: string | null }[])
      items.push({ resourceId: it.resourceId, state: it.state, lastError: it.lastError });
    cursor = r.body.nextCursor as string | null;
    if (cursor === null) return items;
  }
}

export function ledgerCounts(ledger: readonly LedgerItem[] | undefined): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const l of ledger ?? []) counts[l.state] = (counts[l.state] ?? 0) + 1;
  return counts;
}

export function worldOf(c: Cluster, results: readonly TrialResult[]): World {
  const windows = results.map((r) => ({ index: r.spec.index, from: r.startedAt }));
  return {
    calls: c.downstream.calls,
    appliedByKey: c.downstream.appliedByKey,
    stateOf: (id) => c.downstream.state(id),
    bodiesByKey: c.proxy.bodiesByKey,
    ownerOf: (id) => trialOfTag(tagOf(id)),
    trialAt: (at) => {
      let owner: number | undefined;
      for (const w of windows) if (w.from <= at) owner = w.index;
      return owner ?? windows[0]?.index;
    },
  };
}

export async function runTrial(
  c: Cluster,
  spec: TrialSpec,
  log: (l: string) => void,
  previous: readonly TrialResult[] = [],
): Promise<TrialResult> {
  const { index: i, rng } = spec;
  const tag = `t${i}`;
  const tenants = Array.from({ length: spec.tenants }, (_, t) => `tn_chaos_${i}_${t}`);
  const ids = Array.from({ length: spec.items }, (_, k) => `app_${tag}i${k}`);
  const tenantOf = new Map<string, string>();
  ids.forEach((id, k) => tenantOf.set(id, k < tenants.length ? tenants[k]! : rng.pick(tenants)));
  // One resource per tenant that is not in the operation: any destructive call on it is unexpected.
  const bystanders = tenants.map((t, k) => {
    const id = `app_${tag}b${k}`;
    tenantOf.set(id, t);
    return id;
  });
  const result: TrialResult = {
    spec,
    tag,
    ids,
    bystanders,
    startedAt: Date.now(),
    endedAt: 0,
    faultNote: '',
    phaseNote: '',
    states: [],
    terminal: false,
    counts: {},
    crashes: [],
    verdict: { lost: 0, duplicated: 0, unexpected: 0, problems: [], notes: [] },
  };
  const crashesBefore = c.crashes.length;
  let watcher: OpWatcher | undefined;
  try {
    // Registry and downstream: the same resources in both.
    const admin = c.tokens.admin;
    const t = await c.call('POST', '/v1/registry/tenants', {
      token: admin,
      body: { tenants: tenants.map((id) => ({ id, name: `Chaos tenant ${id}` })) },
    });
    if (t.status !== 200) throw new Error(`POST tenants: ${t.status} ${JSON.stringify(t.body)}`);
    const all = [...ids, ...bystanders];
    const res = await c.call('POST', '/v1/registry/resources', {
      token: admin,
      body: { resources: all.map((id) => ({ id, type: 'app', tenantId: tenantOf.get(id) })) },
    });
    if (res.status !== 200) throw new Error(`POST resources: ${res.status} ${JSON.stringify(res.body)}`);
    for (const id of all)
      c.downstream.resources.set(id, {
        id,
        tenantId: tenantOf.get(id)!,
        state: 'active',
        data: { name: `chaos app ${id}`, plan: 'pro', trial: i },
      });

    // requester submits (idempotency key: a retried submit gets the same operation back)
    const sub = await c.call('POST', '/v1/operations', {
      token: c.tokens.requester,
      headers: { 'idempotency-key': `chaos-${c.prefix}-${i}` },
      body: {
        targetType: 'app',
        reason: `chaos trial ${i}: ${spec.fault} during ${spec.phase}`,
        ticket: `CHAOS-${i}`,
        ids,
        rollout: { waves: ['1', '10%', '100%'], bakeSeconds: spec.bakeSeconds, concurrency: ROLLOUT_CONCURRENCY },
        haltPolicy: { onHalt: 'rollback', probe: 'optional' },
      },
    });
    if (sub.status !== 201 && sub.status !== 200) throw new Error(`submit: ${sub.status} ${JSON.stringify(sub.body)}`);
    const opId = sub.body.id as string;
    result.operationId = opId;
    // Beyond a budget (the trials of a run add up in the rolling 24 h ones) a plan needs
    // break-glass: a second approval, by an admin.
    const approvers = sub.body.requiresBreakGlass ? (['approver', 'admin'] as const) : (['approver'] as const);
    for (const role of approvers) {
      const ap = await command(c, role, opId, 'approve', { planHash: sub.body.planHash });
      if (ap.status !== 200) throw new Error(`approve as ${role}: ${ap.status} ${JSON.stringify(ap.body)}`);
    }
    const st = await command(c, 'operator', opId, 'start', {});
    if (st.status !== 200) throw new Error(`start: ${st.status} ${JSON.stringify(st.body)}`);
    const t0 = Date.now();
    watcher = new OpWatcher(c, opId, t0);
    const w = watcher;
    const progress = () => c.proxy.progress(tag);
    const PROGRESS_WAIT_MS = 60_000;

    if (spec.phase === 'delete') {
      const target = Math.max(1, Math.round(spec.deleteAt * spec.items));
      const reached = await waitUntil(() => progress().softDeleted >= target || w.terminal, PROGRESS_WAIT_MS);
      result.phaseNote = `fault after ${progress().softDeleted}/${spec.items} deletes (target ${target})${reached ? '' : ' [progress wait timed out]'}${w.terminal ? ` [op already ${w.state}]` : ''}`;
    } else {
      const target = Math.max(1, Math.round(spec.deleteAt * spec.items));
      await waitUntil(() => progress().softDeleted >= target || w.terminal, PROGRESS_WAIT_MS);
      const deleted = progress().softDeleted;
      const rb = await command(c, 'operator', opId, 'rollback', { reason: `chaos trial ${i}: rollback mid-run` });
      const rbAt = Date.now() - t0;
      if (rb.status !== 200) {
        await w.poll();
        result.phaseNote = `rollback answered ${rb.status} (${rb.body?.code ?? ''}) in state ${w.state}; fault injected anyway`;
      } else {
        const target2 = Math.round(spec.restoreAt * deleted);
        const reached = await waitUntil(() => progress().restored >= target2 || w.terminal, PROGRESS_WAIT_MS);
        result.phaseNote = `rollback at ${rbAt} ms after ${deleted}/${spec.items} deletes; fault after ${progress().restored} restores (target ${target2})${reached ? '' : ' [progress wait timed out]'}${w.terminal ? ` [op already ${w.state}]` : ''}`;
      }
    }

    // the fault, healed in the background while we wait for the end
    const injectedAt = Date.now();
    result.injectedAtMs = injectedAt - t0;
    let healError: string | undefined;
    const heal = inject(c, spec.fault, rng).then(
      (r) => {
        result.faultNote = r.note;
      },
      (err: unknown) => {
        healError = (err as Error).message;
      },
    );
    const deadline = injectedAt + TERMINAL_WAIT_MS;
    while (!w.terminal && Date.now() < deadline) await sleep(50);
    await heal;
    if (healError) result.faultNote = `fault/heal failed: ${healError}`;
    await w.stop();
    await w.poll();
    result.terminal = w.terminal;
    result.terminalAt = w.terminalAt;
    result.finalState = w.state;
    result.states = w.states;
    result.haltReason = w.haltReason;
    if (w.unreachable) result.phaseNote += `; API unreachable for ${w.unreachable} polls`;
    result.ledger = await readLedger(c, opId).catch((err: unknown) => {
      result.error = `ledger unreadable: ${(err as Error).message}`;
      return undefined;
    });
  } catch (err) {
    result.error = (err as Error).message;
    if (watcher) {
      await watcher.stop();
      result.finalState = watcher.state;
      result.states = watcher.states;
    }
  }
  result.endedAt = Date.now();
  result.crashes = c.crashes.slice(crashesBefore);
  result.counts = ledgerCounts(result.ledger);
  result.verdict = check(worldOf(c, [...previous, result]), subjectOf(result));
  log(summaryLine(result));
  return result;
}

export const subjectOf = (r: TrialResult) => ({
  index: r.spec.index,
  operationId: r.operationId,
  ids: r.ids,
  bystanders: r.bystanders,
  finalState: r.finalState,
  ledger: r.ledger,
  terminalAt: r.terminalAt,
});

export const isStuck = (r: TrialResult) => !r.terminal;

export function summaryLine(r: TrialResult): string {
  const v = r.verdict;
  return (
    `trial ${r.spec.index} ${r.spec.fault} during ${r.spec.phase}: ${r.finalState ?? '?'} in ${((r.endedAt - r.startedAt) / 1000).toFixed(1)} s; ` +
    `lost=${v.lost} dup=${v.duplicated} unexpected=${v.unexpected} stuck=${isStuck(r) ? 1 : 0}` +
    (r.crashes.length ? ` crashes=${r.crashes.map((x) => x.name).join(',')}` : '') +
    (r.error ? ` ERROR: ${r.error.split('\n')[0]}` : '')
  );
}
