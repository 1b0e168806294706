// The checker: compares what Blastgate says happened (operation state, item ledger) with what the
// downstream saw and holds (its call log, what it applied per Idempotency-Key, resource states)
// and with the request bodies the proxy recorded. Pure over its inputs, so it can be run again at
// the end of a run over the complete history (late calls included) and tested on planted faults.
//
// Counts per trial:
//  lost       – an item the ledger says `done` whose soft delete was never applied downstream; one the
//               ledger says `restored` that the downstream still has deleted; an operation
//               `completed` with an item not soft-deleted downstream; one `rolled_back` with an item
//               still deleted downstream; an item of the operation missing from the ledger.
//               (Counted once per resource.)
//  duplicated – a resource deleted (softDelete/hardDelete applied) under two different
//               Idempotency-Keys; a key applied twice; a key reused for another request (the
//               downstream's 422); a key sent with two different bodies. (Once per resource.)
//  unexpected – a destructive call for an ID that is not in the operation (the trial's bystander
//               resources, or IDs of no trial at all), a hard delete in a soft operation, any call
//               with a missing or invalid signature. (Once per call.)
//
// The restore drill (rollout.restoreDrill) is expected: after the first wave, one item of the
// operation is restored and soft-deleted again under keys of its own (prefix `bg1-drill-`). Its
// calls are told apart by key: they are not a second delete of the item, and the item's own delete
// must still have been applied. An item the drill restored and left live while the ledger says
// `done` is lost; a drill on more than one item of an operation is noted.
import { DRILL_KEY_PREFIX } from '../../src/modules/adapters/signing.ts';
import type { DownstreamCall, ResourceState } from '../support/downstream.ts';

export const isDrillCall = (c: Pick<DownstreamCall, 'idempotencyKey'>) =>
  c.idempotencyKey?.startsWith(DRILL_KEY_PREFIX) === true;

export const TERMINAL_STATES = new Set([
  'completed',
  'completed_with_failures',
  'rolled_back',
  'rollback_incomplete',
  'cancelled',
  'failed',
  'expired',
  'rejected',
]);

const DESTRUCTIVE = new Set(['softDelete', 'restore', 'hardDelete']);
const DELETES = new Set(['softDelete', 'hardDelete']);

export interface LedgerItem {
  resourceId: string;
  state: string;
  lastError?: string | null;
}

export interface CheckSubject {
  index: number;
  operationId: string | undefined;
  /** The operation's resource IDs. */
  ids: readonly string[];
  /** Resources of the same tenants, in registry and downstream, that are not in the operation. */
  bystanders: readonly string[];
  /** Last observed operation state. */
  finalState: string | undefined;
  /** The item ledger (undefined: could not be read). */
  ledger: readonly LedgerItem[] | undefined;
  /** Epoch ms the terminal state was first observed (for late-call notes). */
  terminalAt?: number;
}

export interface World {
  calls: readonly DownstreamCall[];
  appliedByKey: ReadonlyMap<string, number>;
  stateOf(id: string): ResourceState | undefined;
  /** Distinct body hashes per Idempotency-Key among requests that reached the downstream. */
  bodiesByKey: ReadonlyMap<string, ReadonlySet<string>>;
  /** The trial a resource ID belongs to (operation item or bystander), if any. */
  ownerOf(resourceId: string): number | undefined;
  /** The trial that was running at an instant (for calls that carry no trial's ID). */
  trialAt(at: number): number | undefined;
}

export interface Verdict {
  lost: number;
  duplicated: number;
  unexpected: number;
  /** One line per finding (capped), with the resource's story. */
  problems: string[];
  /** Observations that are not counted (late calls, ledger/downstream disagreements). */
  notes: string[];
}

const MAX_LINES = 12;

export function indexCalls(calls: readonly DownstreamCall[]): Map<string, DownstreamCall[]> {
  const byId = new Map<string, DownstreamCall[]>();
  for (const c of calls) {
    if (c.resourceId === undefined) continue;
    let l = byId.get(c.resourceId);
    if (!l) byId.set(c.resourceId, (l = []));
    l.push(c);
  }
  return byId;
}

export function check(world: World, s: CheckSubject, byId = indexCalls(world.calls)): Verdict {
  const lost = new Map<string, string>();
  const dup = new Map<string, string>();
  const unexpected: string[] = [];
  const notes: string[] = [];
  const callsOf = (id: string) => byId.get(id) ?? [];
  const t0 = world.calls[0]?.at ?? 0;
  const story = (id: string) => {
    const item = s.ledger?.find((l) => l.resourceId === id);
    const led = item ? `${item.state}${item.lastError ? ` (${item.lastError.slice(0, 160)})` : ''}` : '-';
    const cs = callsOf(id)
      .filter((c) => c.action !== 'snapshot')
      .map(
        (c) =>
          `${c.action}:${c.status ?? '…'}${c.idempotencyKey ? `[${c.idempotencyKey.slice(-6)}]` : ''}@${c.at - t0}`,
      )
      .join(' ');
    return `${id} ledger=${led} downstream=${world.stateOf(id) ?? '-'} calls: ${cs || 'none'}`;
  };
  const applied = (c: DownstreamCall) =>
    c.idempotencyKey !== undefined && (world.appliedByKey.get(c.idempotencyKey) ?? 0) > 0;

  // lost
  if (s.ledger) {
    const inLedger = new Set(s.ledger.map((l) => l.resourceId));
    for (const id of s.ids) if (!inLedger.has(id)) lost.set(id, `missing from the ledger: ${story(id)}`);
    for (const item of s.ledger) {
      const id = item.resourceId;
      if (item.state === 'done' && !callsOf(id).some((c) => c.action === 'softDelete' && !isDrillCall(c) && applied(c)))
        lost.set(id, `ledger done, no soft delete applied downstream: ${story(id)}`);
      if (
        item.state === 'done' &&
        world.stateOf(id) === 'active' &&
        callsOf(id).some((c) => isDrillCall(c) && c.action === 'restore' && applied(c)) &&
        s.finalState &&
        TERMINAL_STATES.has(s.finalState)
      )
        lost.set(id, `the restore drill left it live while the ledger says done: ${story(id)}`);
      if (item.state === 'restored' && world.stateOf(id) !== 'active')
        lost.set(id, `ledger restored, downstream ${world.stateOf(id)}: ${story(id)}`);
      if (
        ['pending', 'skipped', 'failed'].includes(item.state) &&
        world.stateOf(id) !== 'active' &&
        s.finalState &&
        TERMINAL_STATES.has(s.finalState)
      )
        notes.push(`ledger ${item.state} but downstream ${world.stateOf(id)} after ${s.finalState}: ${story(id)}`);
      if (['claimed', 'restoring'].includes(item.state) && s.finalState && TERMINAL_STATES.has(s.finalState))
        notes.push(`ledger item still ${item.state} after ${s.finalState}: ${story(id)}`);
    }
  }
  if (s.finalState === 'completed')
    for (const id of s.ids)
      if (world.stateOf(id) !== 'soft_deleted')
        lost.set(id, `operation completed, downstream ${world.stateOf(id)}: ${story(id)}`);
  if (s.finalState === 'rolled_back')
    for (const id of s.ids)
      if (world.stateOf(id) !== 'active')
        lost.set(id, `operation rolled_back, downstream ${world.stateOf(id)}: ${story(id)}`);

  // duplicated
  for (const id of [...s.ids, ...s.bystanders]) {
    const cs = callsOf(id);
    // The drill's re-delete is not a second delete of the item: it deletes what the drill restored.
    const deleteKeys = new Set(
      cs.filter((c) => DELETES.has(c.action) && !isDrillCall(c) && applied(c)).map((c) => c.idempotencyKey!),
    );
    if (deleteKeys.size > 1) dup.set(id, `deleted under ${deleteKeys.size} different keys: ${story(id)}`);
    for (const c of cs) {
      if (!c.idempotencyKey) continue;
      const n = world.appliedByKey.get(c.idempotencyKey) ?? 0;
      if (n > 1) dup.set(id, `key ${c.idempotencyKey} applied ${n} times: ${story(id)}`);
      if (c.status === 422) dup.set(id, `key ${c.idempotencyKey} reused for another request (422): ${story(id)}`);
      const bodies = world.bodiesByKey.get(c.idempotencyKey)?.size ?? 0;
      if (bodies > 1) dup.set(id, `key ${c.idempotencyKey} sent with ${bodies} different bodies: ${story(id)}`);
    }
  }

  const drilled = s.ids.filter((id) => callsOf(id).some(isDrillCall));
  if (drilled.length > 1)
    notes.push(`restore drill calls on ${drilled.length} items: ${drilled.slice(0, 3).join(', ')}`);
  for (const id of drilled) {
    const cs = callsOf(id).filter(isDrillCall);
    if (cs.some((c) => c.action !== 'restore' && c.action !== 'softDelete'))
      unexpected.push(`restore drill sent something else than restore and soft delete: ${story(id)}`);
  }

  // unexpected
  for (const id of s.bystanders)
    for (const c of callsOf(id))
      if (DESTRUCTIVE.has(c.action))
        unexpected.push(`${c.action} of bystander ${id} (not in the operation): ${story(id)}`);
  for (const id of s.ids)
    for (const c of callsOf(id))
      if (c.action === 'hardDelete') unexpected.push(`hard delete in a soft operation: ${story(id)}`);
  for (const c of world.calls) {
    const owner = c.resourceId === undefined ? undefined : world.ownerOf(c.resourceId);
    const mine = owner === s.index || (owner === undefined && world.trialAt(c.at) === s.index);
    if (!mine) continue;
    if (owner === undefined && (DESTRUCTIVE.has(c.action) || c.action === 'unknown'))
      unexpected.push(`${c.action} ${c.method} ${c.path} for an ID of no operation (status ${c.status})`);
    if (!c.signatureValid) unexpected.push(`unsigned or badly signed call: ${c.method} ${c.path} (status ${c.status})`);
  }

  // late calls: destructive calls on the operation's items after its terminal state was seen
  if (s.terminalAt !== undefined) {
    const late = s.ids.flatMap((id) =>
      callsOf(id).filter((c) => DESTRUCTIVE.has(c.action) && c.at > s.terminalAt! + 250),
    );
    if (late.length)
      notes.push(
        `${late.length} destructive call(s) after the terminal state was seen, e.g. ${late
          .slice(0, 3)
          .map((c) => `${c.action} ${c.resourceId} status ${c.status} +${c.at - s.terminalAt!} ms`)
          .join('; ')}`,
      );
  }

  const problems = [
    ...[...lost.values()].map((p) => `lost: ${p}`),
    ...[...dup.values()].map((p) => `duplicated: ${p}`),
    ...unexpected.map((p) => `unexpected: ${p}`),
  ];
  const capped =
    problems.length > MAX_LINES ? [...problems.slice(0, MAX_LINES), `… ${problems.length - MAX_LINES} more`] : problems;
  return { lost: lost.size, duplicated: dup.size, unexpected: unexpected.length, problems: capped, notes };
}
