// The run's report: a final re-check of every trial over the complete history (a late call can
// still turn an earlier trial's "ok" into lost), the table, the findings, and the totals line.
import { check, indexCalls, TERMINAL_STATES } from './checker.ts';
import type { Cluster } from './cluster.ts';
import { condense } from './procs.ts';
import { isStuck, ledgerCounts, readLedger, subjectOf, worldOf, type TrialResult } from './trial.ts';

export interface Totals {
  lost: number;
  duplicated: number;
  unexpected: number;
  stuck: number;
}

/**
 * Reads every trial's state and ledger again and re-runs the checker over the whole call log.
 * A trial that was stuck keeps counting as stuck; its later state is shown next to it.
 */
export async function recheck(c: Cluster, results: TrialResult[]): Promise<void> {
  const byId = indexCalls(c.downstream.calls);
  const world = worldOf(c, results);
  for (const r of results) {
    if (r.operationId) {
      try {
        const op = await c.call('GET', `/v1/operations/${r.operationId}`, {
          token: c.tokens.viewer,
          deadlineMs: 15_000,
        });
        if (op.status === 200 && op.body.state !== r.finalState) {
          r.laterState = op.body.state as string;
          if (TERMINAL_STATES.has(r.laterState)) r.ledger = await readLedger(c, r.operationId);
        }
        // A state that reads as success must hold over the whole history: check with the latest.
      } catch {
        /* keep what the trial saw */
      }
    }
    r.counts = ledgerCounts(r.ledger);
    r.verdict = check(world, { ...subjectOf(r), finalState: r.laterState ?? r.finalState }, byId);
  }
}

export function totals(results: readonly TrialResult[]): Totals {
  const t: Totals = { lost: 0, duplicated: 0, unexpected: 0, stuck: 0 };
  for (const r of results) {
    t.lost += r.verdict.lost;
    t.duplicated += r.verdict.duplicated;
    t.unexpected += r.verdict.unexpected;
    t.stuck += isStuck(r) ? 1 : 0;
  }
  return t;
}

export const totalsLine = (t: Totals) =>
  `lost=${t.lost} duplicated=${t.duplicated} unexpected=${t.unexpected} stuck=${t.stuck}`;

export function table(results: readonly TrialResult[]): string {
  const head = [
    'trial',
    'fault',
    'phase',
    'inj ms',
    'final state',
    'done/rest/fail',
    'lost',
    'dup',
    'unexp',
    'stuck',
    'crash',
    's',
  ];
  const rows = results.map((r) => {
    const n = r.counts;
    const final = (r.finalState ?? '?') + (r.laterState ? ` (later ${r.laterState})` : '');
    return [
      String(r.spec.index),
      r.spec.fault,
      r.spec.phase,
      r.injectedAtMs === undefined ? '-' : String(r.injectedAtMs),
      final,
      `${n.done ?? 0}/${n.restored ?? 0}/${(n.failed ?? 0) + (n.restore_failed ?? 0)}`,
      String(r.verdict.lost),
      String(r.verdict.duplicated),
      String(r.verdict.unexpected),
      isStuck(r) ? '1' : '0',
      String(r.crashes.length),
      ((r.endedAt - r.startedAt) / 1000).toFixed(1),
    ];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...rows.map(fmt)].join('\n');
}

/** Per-trial details: what was injected, the states passed through, crashes, and every finding. */
export function details(results: readonly TrialResult[]): string {
  const out: string[] = [];
  for (const r of results) {
    const v = r.verdict;
    out.push(
      `trial ${r.spec.index} (${r.spec.fault}, ${r.spec.phase}; ${r.ids.length} items, ${r.spec.tenants} tenants, bake ${r.spec.bakeSeconds}s) op ${r.operationId ?? '-'}`,
    );
    out.push(`  ${r.phaseNote}`);
    out.push(`  fault: ${r.faultNote || '-'}`);
    out.push(`  states: ${r.states.join(' → ') || '-'}${r.haltReason ? `; haltReason: ${r.haltReason}` : ''}`);
    const other = Object.entries(r.counts)
      .map(([k, n]) => `${k}=${n}`)
      .join(' ');
    out.push(`  ledger: ${other || '-'}`);
    if (r.error) out.push(`  ERROR: ${r.error}`);
    for (const x of r.crashes) {
      out.push(
        `  CRASH: ${x.name} (pid ${x.pid}) exited on its own, code ${x.code}, ${x.restarted ? 'restarted' : `not restarted${x.restartError ? `: ${x.restartError}` : ''}`}; last lines:`,
      );
      for (const l of x.tail.slice(-10)) out.push(`    | ${condense(l)}`);
    }
    for (const p of v.problems) out.push(`  ${p}`);
    for (const n of v.notes.slice(0, 5)) out.push(`  note: ${n}`);
    if (v.notes.length > 5) out.push(`  note: … ${v.notes.length - 5} more`);
  }
  return out.join('\n');
}
