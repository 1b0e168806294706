// What a plan's `… plan finished` log line and its counter say it did. An Idempotency-Key replay
// stores nothing: it names the operation it answered with and counts as `replayed` (it was
// logged as `planned` under a fresh ID that no operation has, and counted as a new plan). A dry
// run stores nothing either: no operation ID.
export interface PlanOutcome {
  operationId: string | null;
  outcome: string;
}

export function planOutcome(
  r: { kind: string; replayed?: boolean; operation?: { id: string } },
  newId: string,
): PlanOutcome {
  if (r.replayed && r.operation) return { operationId: r.operation.id, outcome: 'replayed' };
  if (r.kind === 'dry_run' || r.kind === 'dry_run_rejected') return { operationId: null, outcome: r.kind };
  return { operationId: newId, outcome: r.kind };
}

/** The counter's label: a rejected dry run counts with the rejections. */
export const metricOutcome = (o: PlanOutcome) => (o.outcome === 'dry_run_rejected' ? 'rejected' : o.outcome);
