// What every command gets: the API client (from flags and the environment), the output mode, and
// the small shared pieces (following an operation, the plan summary, parsing numbers and JSON).
import type { Command } from 'commander';
import { findDuplicateKey } from '../lib/json-keys.ts';
import { resolveConnection, tokenFileWarning, type Connection } from './config.ts';
import { CliError, EXIT, usageError } from './exit-codes.ts';
import { ApiClient } from './http.ts';
import { haltReasonText, makeOut, writeWarning, type Out } from './output.ts';
import { watchOperation, type WatchResult } from './watch.ts';
import { barView, jsonView, lineView, type View } from './watch-view.ts';

export interface Ctx {
  conn: Connection;
  client: ApiClient;
  out: Out;
  json: boolean;
}

export interface GlobalFlags {
  url?: string;
  token?: string;
  tokenFile?: string;
  json?: boolean;
}

export function ctxOf(cmd: Command): Ctx {
  const g = cmd.optsWithGlobals<GlobalFlags>();
  const conn = resolveConnection(g);
  const readable = tokenFileWarning(g);
  if (readable) writeWarning(Boolean(g.json), readable);
  return { conn, client: new ApiClient(conn), out: makeOut(Boolean(g.json)), json: Boolean(g.json) };
}

export function needToken(ctx: Ctx): string {
  if (!ctx.conn.token)
    throw new CliError(
      EXIT.usage,
      'NO_TOKEN',
      'no API token: set BLASTGATE_TOKEN_FILE (or BLASTGATE_TOKEN), or pass --token-file <file> (or --token)',
    );
  return ctx.conn.token;
}

/** The longest wait a timer can hold (2^31 - 1 ms, ~24.8 days): longer ones fire at once. */
export const MAX_DURATION_MS = 2_147_483_647;

/** Parses a duration like 90, 90s, 15m, 2h into ms: more than 0, at most MAX_DURATION_MS. */
export function durationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw usageError(`not a duration: "${text}" (e.g. 90s, 15m, 2h)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = Math.round(n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit]!);
  // Past the timer's limit Node fires it after 1 ms: "wait practically forever" ended at once.
  if (ms < 1 || ms > MAX_DURATION_MS)
    throw usageError(`duration "${text}" is out of range: give one from 1ms to 596h (about 24 days)`);
  return ms;
}

/**
 * A whole-number flag, `min` (and `max`) as the server takes it: --concurrency 0 passed here, then
 * the server refused it. Both ends are refused here with one message.
 */
export function intArg(name: string, min = 0, max?: number) {
  return (text: string): number => {
    if (!/^\d+$/.test(text) || Number(text) < min || (max !== undefined && Number(text) > max))
      throw usageError(
        `${name} must be a whole number, ${max === undefined ? `${min} or more` : `from ${min} to ${max}`} (got "${text}")`,
      );
    return Number(text);
  };
}

export function jsonArg(name: string) {
  return (text: string): Record<string, unknown> => {
    try {
      const v = JSON.parse(text) as unknown;
      // As the server refuses it (DUPLICATE_KEY): JSON.parse would keep the last one silently.
      const dup = findDuplicateKey(text, name);
      if (dup) throw usageError(`${dup.field} gives the key ${JSON.stringify(dup.key)} more than once`, dup);
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch (err) {
      if (err instanceof CliError) throw err;
    }
    throw usageError(`${name} must be a JSON object (got ${text.slice(0, 60)})`);
  };
}

/** The view `watch` and `--wait` use: bars on a terminal, lines in a log, events as JSON. */
export function viewFor(ctx: Ctx, o: { quiet?: boolean } = {}): View {
  if (o.quiet) return { frame: () => undefined, waves: () => undefined, note: () => undefined, close: () => undefined };
  if (ctx.json) return jsonView((s) => process.stdout.write(s));
  if (process.stderr.isTTY) return barView(process.stderr);
  return lineView((s) => process.stderr.write(s));
}

/** Follows an operation to an outcome; prints a last line saying how it ended. */
export async function follow(
  ctx: Ctx,
  operationId: string,
  o: { timeoutMs?: number; after?: string; quiet?: boolean },
): Promise<WatchResult> {
  const view = viewFor(ctx, o);
  try {
    return await watchOperation({
      client: ctx.client,
      operationId,
      view,
      ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
      ...(o.after ? { after: o.after } : {}),
    });
  } finally {
    view.close();
  }
}

/**
 * What an operation in a state that no event moves on its own waits for: "still planned (last heard
 * from the server 8 s ago)" read as a lost connection on a healthy stream with nothing to send (trial L).
 */
const WAITS_FOR: Record<string, string> = {
  planned: ': it waits for an approval (blastgate approve), then a start',
  approved: ': it waits for a start (blastgate start)',
};

const ago = (at: number | null) => (at === null ? 'never' : `${Math.round((Date.now() - at) / 1000)} s ago`);

export function outcomeLine(r: WatchResult): string {
  if (r.timedOut)
    // 'unknown': the stream never delivered a frame (the server did not answer in time).
    return r.state === 'unknown'
      ? `Timed out waiting: no event of ${r.operationId} arrived; its state is not known (blastgate status ${r.operationId}).`
      : // How fresh that state is: a stream that went silent (a hung server) holds an old one.
        `Timed out waiting: ${r.operationId} is still ${r.state}${WAITS_FOR[r.state] ?? ''} (last heard from the server ${ago(r.lastHeardAt)}).`;
  const halt = r.haltReason ? ` (${haltReasonText(r.state, r.haltReason)})` : '';
  return `${r.operationId} is ${r.state}${halt}.`;
}

export interface PlanLike {
  itemCount?: number;
  tenantCount?: number;
  waves?: { index: number; kind?: string; step?: string | null; tenants: number; items: number }[];
  cascade?: { type: string; count: number }[];
  cascadeLeftOut?: { type: string; count: number; ids: string[] }[];
  estimatedRestore?: { seconds?: number };
  leftOut?: {
    purged: number;
    ids: string[];
    erased?: number;
    restored?: number;
    deletedAgain?: number;
    uncertain?: number;
    activeAgain?: number;
    moved?: number;
    childrenKept?: number;
    otherTenant?: number;
    restoreUncertain?: number;
    adapterChanged?: number;
    items?: { id: string; reason: string; detail: string }[];
  };
  liveAtAsOf?: { count: number; ids: string[] } | null;
  requiresBreakGlass?: boolean;
  breakGlassReasons?: string[];
  planHash?: string;
}

/** "1 tenant", "2 tenants". */
const counted = (n: number, noun: string) => `${n} ${noun}${n === 1 ? '' : 's'}`;

/** The plan as a reviewer reads it: sizes, waves, restore estimate, break-glass, hash. */
export function planLines(
  plan: PlanLike | null | undefined,
  planHash?: string | null,
  /** The operation's kind: what a purge or an erasure deletes can never be restored. */
  kind?: string,
): string[] {
  if (!plan) return ['  (no plan)'];
  const lines = [
    `  items ${plan.itemCount ?? '?'} · tenants ${plan.tenantCount ?? '?'} · waves ${plan.waves?.length ?? 0}`,
  ];
  // A step is cumulative (the share of tenants reached once the wave ends), its counts are what the
  // wave adds: "wave 2 (10%): 2 tenants" read as 10% being 2 tenants (a trial).
  const reach = (step: string) =>
    `up to ${step.endsWith('%') ? `${step} of tenants` : counted(Number(step), 'tenant')}`;
  (plan.waves ?? []).forEach((w, k) => {
    const label = w.kind === 'internal' ? ' (internal)' : w.step ? ` (${reach(w.step)})` : '';
    const tenants =
      k === 0 ? counted(w.tenants, 'tenant') : `${w.tenants} more ${w.tenants === 1 ? 'tenant' : 'tenants'}`;
    lines.push(`  wave ${w.index + 1}${label}: ${tenants}, ${counted(w.items, 'item')}`);
  });
  if (plan.cascade?.length) lines.push(`  cascade: ${plan.cascade.map((c) => `${c.count} ${c.type}`).join(', ')}`);
  for (const o of plan.cascadeLeftOut ?? [])
    lines.push(
      `  left out of the cascade: ${o.count} ${o.type} already deleted (${o.ids.slice(0, 5).join(', ')}${o.count > 5 ? ', …' : ''})`,
    );
  if (kind === 'purge' || kind === 'erase')
    lines.push(`  cannot be undone: ${kind === 'purge' ? 'a purge' : 'an erasure'} is a hard delete, never restored`);
  else if (plan.estimatedRestore?.seconds !== undefined)
    lines.push(`  estimated time to restore: ${plan.estimatedRestore.seconds} s`);
  const some = (n: number, ids: string[]) => `${ids.slice(0, 5).join(', ')}${n > Math.min(ids.length, 5) ? ', …' : ''}`;
  const of = (reason: string) => (plan.leftOut?.items ?? []).filter((i) => i.reason === reason);
  if (plan.leftOut?.purged) {
    lines.push(`  left out: ${plan.leftOut.purged} already purged (${some(plan.leftOut.purged, plan.leftOut.ids)})`);
    // An erasure purges too, and destroys the snapshots: its own line, with its own IDs (the
    // purged line's IDs read as the erased ones when they shared a line, a trial).
    if (plan.leftOut.erased) {
      const erased = of('erased').map((i) => i.id);
      lines.push(
        `    of them erased, snapshots destroyed: ${plan.leftOut.erased} (${some(plan.leftOut.erased, erased)})`,
      );
    }
  }
  // An operation's restore or purge takes less than it deleted: say what came back (or went again)
  // since, one line per reason and operation (each item's detail is the same sentence).
  for (const [reason, n, what] of [
    ['restored', plan.leftOut?.restored, 'brought back since'],
    ['deleted_again', plan.leftOut?.deletedAgain, 'deleted again since'],
    ['uncertain', plan.leftOut?.uncertain, 'whose delete may or may not have happened'],
    ['active_again', plan.leftOut?.activeAgain, 'active again, brought back outside Blastgate'],
    ['moved', plan.leftOut?.moved, 'moved to another tenant or type since their delete'],
    ['children_kept', plan.leftOut?.childrenKept, 'kept: a child of theirs is not purged with them'],
    ['other_tenant', plan.leftOut?.otherTenant, "of other tenants, taken along by this tenant's deletes"],
    [
      'adapter_changed',
      plan.leftOut?.adapterChanged,
      'left out: deleted through another system than their adapter reaches now',
    ],
    [
      'restore_uncertain',
      plan.leftOut?.restoreUncertain,
      'left out: a restore of them went out with its outcome unknown',
    ],
  ] as const) {
    if (!n) continue;
    const byDetail = new Map<string, string[]>();
    for (const i of of(reason)) byDetail.set(i.detail, [...(byDetail.get(i.detail) ?? []), i.id]);
    lines.push(`  left out: ${n} ${what}`);
    for (const [detail, ids] of byDetail) lines.push(`    ${detail}: ${some(ids.length, ids)}`);
  }
  if (plan.liveAtAsOf?.count)
    lines.push(
      `  not as of that time: ${plan.liveAtAsOf.count} were live then (brought back, deleted again since) and go back to their state when brought back, without later edits (${some(plan.liveAtAsOf.count, plan.liveAtAsOf.ids)})`,
    );
  if (plan.requiresBreakGlass)
    lines.push(`  BREAK-GLASS required: ${(plan.breakGlassReasons ?? []).join('; ') || 'see the plan'}`);
  const hash = planHash ?? plan.planHash;
  if (hash) lines.push(`  plan hash: ${hash}`);
  return lines;
}

/** A command action that returns its exit code (commander's actions return nothing). */
export function act<A extends unknown[]>(fn: (...args: A) => Promise<number>) {
  return async (...args: A): Promise<void> => {
    process.exitCode = await fn(...args);
  };
}
