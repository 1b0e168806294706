// Which webhook events an audit event is, and what they carry. Pure: the dispatcher reads audit
// events and operations, this decides the event types and builds the body every attempt sends.
// Event names are issue 9's contract: <prefix>.<suffix> for operation/restore/purge, and
// freeze.on / freeze.off. The prefix follows the operation's kind, not the audit action's
// namespace: the lifecycle audits every kind as `operation.*`.

export const EVENT_SUFFIXES = [
  'planned',
  'rejected',
  'approved',
  'started',
  'wave_completed',
  'halted',
  'rolled_back',
  'rollback_incomplete',
  'cancelled',
  'expired',
  'completed',
] as const;
export const EVENT_PREFIXES = ['operation', 'restore', 'purge'] as const;
export const EVENT_TYPES: readonly string[] = [
  ...EVENT_PREFIXES.flatMap((p) => EVENT_SUFFIXES.map((s) => `${p}.${s}`)),
  'freeze.on',
  'freeze.off',
];
/** The filter that takes every event type. */
export const ALL_EVENTS = '*';

/** An audit event with the operation it concerns (null when none, or when that row is gone). */
export interface AuditSource {
  seq: number;
  at: string;
  actor: string;
  action: string;
  operationId: string | null;
  payload: Record<string, unknown>;
  operation: {
    kind: string;
    state: string;
    targetType: string;
    itemCount: number;
    tenantCount: number;
    waveCount: number | null;
    ticket: string;
    reason: string;
    requestedBy: string;
    haltReason: string | null;
  } | null;
}

export interface WebhookEvent {
  /** Stable across endpoints and retries: the Standard Webhooks message id (webhook-id). */
  id: string;
  type: string;
  body: { type: string; timestamp: string; data: Record<string, unknown> };
}

// Lifecycle audit verb → event suffixes. approved_and_started is one audit event for an approval
// that starts at once (autoStart): subscribers of either event expect it. The last wave has no
// wave_settled of its own: its end is the `completed` event.
const SUFFIXES_OF: Record<string, (typeof EVENT_SUFFIXES)[number][]> = {
  planned: ['planned'],
  rejected: ['rejected'],
  approved: ['approved'],
  approved_and_started: ['approved', 'started'],
  started: ['started'],
  wave_settled: ['wave_completed'],
  halted: ['halted'],
  rolled_back: ['rolled_back'],
  // Every end an operation can reach is announced: a rollback that could not restore everything
  // is the one an incident channel most needs (a new-user trial found it silent).
  rollback_incomplete: ['rollback_incomplete'],
  cancelled: ['cancelled'],
  expired: ['expired'],
  completed: ['completed'],
  completed_with_failures: ['completed'],
};

/** An erasure is a purge approved for compliance: it is announced as one. */
export const prefixOfKind = (kind: string) =>
  kind === 'restore' ? 'restore' : kind === 'purge' || kind === 'erase' ? 'purge' : 'operation';

/** Event types of one audit event ([] for the many that are not webhook events). */
export function eventTypesOf(a: Pick<AuditSource, 'action' | 'payload' | 'operation'>): string[] {
  const dot = a.action.indexOf('.');
  const ns = a.action.slice(0, dot);
  const verb = a.action.slice(dot + 1);
  if (ns === 'freeze') {
    // Setting a freeze that is already set changes nothing: no event.
    if (a.payload.changed === false) return [];
    return verb === 'set' ? ['freeze.on'] : verb === 'lift' ? ['freeze.off'] : [];
  }
  if (!(EVENT_PREFIXES as readonly string[]).includes(ns)) return [];
  const prefix = prefixOfKind(a.operation?.kind ?? (ns === 'operation' ? 'delete' : ns));
  return (SUFFIXES_OF[verb] ?? []).map((s) => `${prefix}.${s}`);
}

export const eventIdOf = (seq: number, type: string) => `evt_${seq}_${type.replace('.', '_')}`;

/** Whether an endpoint's filter takes this type. */
export const matches = (filter: readonly string[], type: string) =>
  filter.includes(ALL_EVENTS) || filter.includes(type);

/** Event type names in `filter` that are not event types (the route names them in its refusal). */
export const unknownEventTypes = (filter: readonly string[]) =>
  filter.filter((t) => t !== ALL_EVENTS && !EVENT_TYPES.includes(t));

const STATE_AFTER: Record<string, string> = { planned: 'planned', rejected: 'rejected' };
// Audit details worth sending as they are (the rest stays in the audit log, linked).
const DETAIL_KEYS = ['stats', 'failed', 'restored', 'onHalt', 'comment', 'autoStart', 'bakedWave', 'mode'];

const operationLinks = (id: string) => ({
  self: `/v1/operations/${id}`,
  items: `/v1/operations/${id}/items`,
  events: `/v1/operations/${id}/events`,
  audit: `/v1/audit?operationId=${encodeURIComponent(id)}`,
});

/** The events one audit event makes, with their bodies. */
export function buildEvents(a: AuditSource): WebhookEvent[] {
  return eventTypesOf(a).map((type) => ({ id: eventIdOf(a.seq, type), type, body: bodyOf(a, type) }));
}

/** Event suffixes whose body carries the reason the operation stopped or was undone. */
const ENDS_WITH_REASON = ['halted', 'rollback_incomplete', 'rolled_back', 'cancelled'];

function bodyOf(a: AuditSource, type: string): WebhookEvent['body'] {
  const p = a.payload;
  const base = { eventId: eventIdOf(a.seq, type), auditSeq: a.seq, action: a.action, actor: a.actor };
  if (type.startsWith('freeze.')) {
    const data = {
      ...base,
      frozen: type === 'freeze.on',
      reason: p.reason ?? null,
      links: { freeze: '/v1/admin/freeze' },
    };
    return { type, timestamp: a.at, data };
  }
  const op = a.operation;
  const verb = a.action.slice(a.action.indexOf('.') + 1);
  const state = typeof p.to === 'string' ? p.to : (STATE_AFTER[verb] ?? op?.state ?? null);
  const detail = Object.fromEntries(DETAIL_KEYS.filter((k) => p[k] !== undefined).map((k) => [k, p[k]]));
  const data = {
    ...base,
    operationId: a.operationId,
    kind: op?.kind ?? (typeof p.kind === 'string' ? p.kind : null),
    state,
    targetType: op?.targetType ?? p.targetType ?? null,
    itemCount: op?.itemCount ?? null,
    tenantCount: op?.tenantCount ?? null,
    wave: typeof p.wave === 'number' ? p.wave : null,
    waveCount: op?.waveCount ?? null,
    // A halt says why; otherwise the reason the operation was asked for.
    reason: type.endsWith('.halted') && typeof p.reason === 'string' ? p.reason : (op?.reason ?? p.reason ?? null),
    // Every end that did not go as asked says why (a rollback_incomplete, a cancel, the rollback
    // that rolled it back), not only a halt: the operation's haltReason, as its GET showed it then
    // (the event's, which keeps a halt's cause under an operator's rollback), else as it is now.
    haltReason: ENDS_WITH_REASON.includes(type.slice(type.lastIndexOf('.') + 1))
      ? (p.haltReason ?? p.reason ?? op?.haltReason ?? null)
      : null,
    ticket: op?.ticket ?? p.ticket ?? null,
    requestedBy: op?.requestedBy ?? null,
    detail,
    links: a.operationId ? operationLinks(a.operationId) : {},
  };
  return { type, timestamp: a.at, data };
}
