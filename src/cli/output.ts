// What the CLI prints. Human text on a terminal or a log; with --json exactly one JSON document on
// stdout per command (watch: one per event) and errors as one JSON object on stderr carrying the
// server's `code`. Error text is never more than the server said plus what to do next.
import { CliError, EXIT } from './exit-codes.ts';

export interface Out {
  json: boolean;
  /** A human line on stdout (nothing in --json mode). */
  line(text?: string): void;
  /** A note on stderr (progress, reconnects); nothing in --json mode. */
  note(text: string): void;
  /** The command's result: printed as JSON in --json mode, else `human` is printed. */
  result(doc: unknown, human?: () => void): void;
}

/**
 * A warning on stderr (stdout is what pipelines parse): `blastgate: warning: <message>`, or with
 * --json one JSON object per line, `{"warning": {code, message, …details}}`.
 */
export function writeWarning(
  json: boolean,
  w: { code: string; message: string } & Record<string, unknown>,
  stderr: NodeJS.WritableStream = process.stderr,
): void {
  stderr.write(json ? JSON.stringify({ warning: w }) + '\n' : `blastgate: warning: ${w.message}\n`);
}

export function makeOut(json: boolean, stdout = process.stdout, stderr = process.stderr): Out {
  return {
    json,
    line: (text = '') => void (json || stdout.write(text + '\n')),
    note: (text) => void (json || stderr.write(text + '\n')),
    result(doc, human) {
      if (json) stdout.write(JSON.stringify(doc) + '\n');
      else human?.();
    },
  };
}

export interface Offender {
  id: string;
  /** The ID list's line (the CLI adds it: inListLines). */
  line?: number;
  escaped?: string;
  actualType?: string | null;
  tenantId?: string | null;
  heldBy?: string;
  deletedBy?: string;
  via?: { id: string; type: string | null; tenantId: string | null };
  purgeAfter?: string;
  /** already_deleted: the state it is in. */
  state?: string;
}

const FIRST_OFFENDERS = 5;

/** The lines explaining a rejected plan: counts per class, the first offenders, where the rest are. */
export function rejectionLines(err: CliError): string[] {
  const d = (err.details ?? {}) as {
    operationId?: string | null;
    counts?: Record<string, number>;
    offenders?: Record<string, Offender[]>;
    reportUrl?: string | null;
    dryRun?: boolean;
    offendersComplete?: boolean;
  };
  const lines = [`Plan rejected (${err.code}): nothing will run.`];
  const counts = Object.entries(d.counts ?? {}).filter(([c, n]) => c !== 'ok' && n > 0);
  if (d.counts?.ok !== undefined) lines.push(`  ok: ${d.counts.ok}`);
  for (const [cls, n] of counts) {
    const first = (d.offenders?.[cls] ?? []).slice(0, FIRST_OFFENDERS).map((o) => showOffender(o, cls));
    const more = n > first.length ? `, … (${n - first.length} more)` : '';
    lines.push(`  ${cls}: ${n}${first.length ? `  e.g. ${first.join(', ')}${more}` : ''}`);
  }
  if (d.operationId && d.reportUrl)
    lines.push(
      `Full report: blastgate report ${d.operationId}  (GET ${d.reportUrl}); the rejection is recorded as ${d.operationId}.`,
    );
  else if (d.dryRun)
    lines.push(
      `This was a dry run: nothing was stored, so there is no report; ${err.recordWith ?? '`blastgate submit`'} records the rejection with its full report.`,
    );
  lines.push(nextStep(counts, d.offenders, d.dryRun === true, err.fromScope === true));
  return lines;
}

/**
 * What to do about a rejection. Only retention in the way (a purge asked for too early): no list
 * is wrong, the time is; "fix the list" read as nonsense for a purge of a tenant (a trial).
 */
function nextStep(
  counts: [string, number][],
  offenders: Record<string, Offender[]> | undefined,
  dryRun: boolean,
  fromScope: boolean,
) {
  if (counts.length === 1 && counts[0]![0] === 'within_retention') {
    const ends = (offenders?.within_retention ?? []).map((o) => o.purgeAfter).filter((t): t is string => !!t);
    const first = ends.sort()[0];
    return `Their retention has not ended${first ? ` (the first ends ${first})` : ''}: purge them after that, or leave them out.`;
  }
  // Gone for good: no list fixes that but leaving them out (a trial read "fix the list" as a way back).
  if (counts.length > 0 && counts.every(([cls]) => cls === 'purged' || cls === 'erased'))
    return `They can never be restored (${counts.map(([cls]) => cls).join(', ')}): leave them out of the list${dryRun ? '' : ' and submit it again (with a new idempotency key)'}.`;
  // May be live again: what settles it is a restore, not the list (the scope's hint sent a trial
  // looking for a parent to restore).
  if (counts.length > 0 && counts.every(([cls]) => cls === 'restore_uncertain'))
    return `A restore of each went out with its outcome unknown, so they may be live again: restore them again to settle it (blastgate restore), or leave them out${dryRun ? '' : ' and submit again (with a new idempotency key)'}.`;
  // A tenant or an operation: no list was given to fix (a trial).
  if (fromScope)
    return 'These come from the scope, not a list: settle what each one names (e.g. restore the parent it waits for first), or give the rest by IDs (--type with --ids-file), leaving them out.';
  return dryRun
    ? 'Fix the list before running it for real.'
    : 'Fix the list and submit it again (with a new idempotency key).';
}

function showOffender(o: Offender, cls: string): string {
  const extra = offenderDetails(o, cls);
  return `${o.escaped ?? o.id}${extra.length ? ` (${extra.join(', ')})` : ''}`;
}

/**
 * What the API says of one offender beyond its class: the words a rejection and `report` print.
 * `via` is the parent a restore's parent_deleted item waits for, and otherwise the descendant a
 * delete or purge takes along (a trial read "app_300 … for site site_3, which it takes along").
 */
export function offenderDetails(o: Offender, cls?: string): string[] {
  const via = o.via && `${o.via.type ?? 'resource'} ${o.via.id}${o.via.tenantId ? ` of ${o.via.tenantId}` : ''}`;
  return [
    o.line ? `line ${o.line}` : '',
    o.actualType ? `is ${o.actualType}` : '',
    via
      ? cls === 'parent_deleted'
        ? `its parent ${via} is deleted: restore it first, or with it`
        : `for ${via}, which it takes along`
      : '',
    o.heldBy ? `held by ${o.heldBy}` : '',
    o.deletedBy ? `its delete by ${o.deletedBy} may have happened: roll that back to restore it` : '',
    o.purgeAfter ? `retained until ${o.purgeAfter}` : '',
    o.state ? `is ${o.state}` : '',
  ].filter(Boolean);
}

/**
 * The server's `haltReason` with a label that fits: an operation rolling back (or rolled back) says
 * why in its own words ("rollback by ops-1: …", with the halt before it, if any), so it is shown
 * as it is. Labelled "halt reason", it read as a halt for the rollback of an operation that had
 * completed and never halted (a trial).
 */
export function haltReasonText(state: string, haltReason: string, label = 'halt reason'): string {
  return ROLLBACK_SHOWN.has(state) ? haltReason : `${label}: ${haltReason}`;
}
const ROLLBACK_SHOWN = new Set(['rolling_back', 'rolled_back', 'rollback_incomplete']);

/** The server's `waiting` (operations/waiting.ts waitingOf): why an operation that should move does not. */
export interface Waiting {
  on: string;
  since: string;
  detail?: string;
  /** restore_retry: failed restores waiting for their retry, when the next is due, the last error. */
  items?: number;
  nextRetryAt?: string;
  lastError?: string | null;
  /** claims: when the first claim held by another run ends (items says how many are held). */
  until?: string;
}

/**
 * What an operation waits for, in a few words (`watch`'s status line, `status`). A rollback waiting
 * out its restores' backoff says how many, when the next retry is due and the last error (cut to
 * `errorChars`), not "waiting for restore_retry".
 */
/** What `waiting.on` names, for people ("waiting for redis" read as a code word: a trial). */
const WAITED_FOR: Record<string, string> = { redis: 'the work queue (Redis)', workers: 'a worker process' };

export function waitingText(w: Waiting, errorChars = Infinity, now = Date.now): string {
  if (w.on === 'claims') {
    const n = w.items ?? 0;
    return `waiting for ${n} item${n === 1 ? '' : 's'} another run holds (a chunk still calling, or a stopped worker's claim until ${w.until ?? '?'})`;
  }
  if (w.on === 'bake_end') return `waiting for the step after the bake that ended at ${w.since}`;
  if (w.on === 'progress') return `no item outcome since ${w.since}`;
  if (w.on !== 'restore_retry') return `waiting for ${WAITED_FOR[w.on] ?? w.on} since ${w.since}`;
  const n = w.items ?? 0;
  const err = w.lastError ?? '';
  const cut = err.length > errorChars ? `${err.slice(0, errorChars)}…` : err;
  // Due already (the restores are out, none answered yet; or a Redis outage held the rollback up):
  // "the next at" a time 17 s ago read as a clock gone wrong (trial L).
  const due = Date.parse(w.nextRetryAt ?? '');
  const when =
    due <= now()
      ? `retrying since ${w.nextRetryAt} (due then, none answered yet)`
      : `the next at ${w.nextRetryAt ?? '?'}`;
  return `waiting to retry ${n} failed restore${n === 1 ? '' : 's'}, ${when}` + (cut ? ` (last error: ${cut})` : '');
}

/** Prints an error the way the mode asks; returns the exit code. */
export function reportError(err: unknown, json: boolean, stderr = process.stderr): number {
  const e =
    err instanceof CliError ? err : new CliError(EXIT.error, 'CLI_ERROR', (err as Error)?.message ?? String(err));
  if (json) {
    const doc = {
      error: {
        code: e.code,
        message: e.message,
        ...(e.status ? { status: e.status } : {}),
        ...(e.details !== undefined ? { details: e.details } : {}),
        ...(e.requestId ? { requestId: e.requestId } : {}),
      },
      exitCode: e.exitCode,
    };
    stderr.write(JSON.stringify(doc) + '\n');
  } else if (e.code === 'PLAN_REJECTED' || isRejection(e)) {
    stderr.write(rejectionLines(e).join('\n') + '\n');
  } else {
    stderr.write(`blastgate: ${e.status ? `${e.status} ` : ''}${e.code}: ${e.message}\n`);
    // The server's answer says "see the server log with this requestId": the CLI prints it.
    if (e.requestId && (e.status ?? 0) >= 500) stderr.write(`  requestId: ${e.requestId}\n`);
    if (e.code === 'INVALID_IDS') stderr.write(invalidIdLines(e).join(''));
  }
  return e.exitCode;
}

const LISTED_INVALID = 20;

/** Each invalid ID the server named (by its list line when the CLI knows it), not only the first. */
function invalidIdLines(e: CliError): string[] {
  const d = (e.details ?? {}) as { invalidCount?: number; invalid?: InvalidId[] };
  const listed = Array.isArray(d.invalid) ? d.invalid : [];
  const lines = listed.slice(0, LISTED_INVALID).map((i) => {
    const where = i.line !== undefined ? `line ${i.line}` : `index ${i.index}`;
    const shown = i.escaped ?? (typeof i.id === 'string' ? i.id : JSON.stringify(i.id));
    return `  ${where}: ${shown} (${i.problem})\n`;
  });
  const more = (d.invalidCount ?? listed.length) - lines.length;
  if (more > 0) lines.push(`  … and ${more} more (--json lists the first ${listed.length})\n`);
  return lines;
}

interface InvalidId {
  index: number;
  line?: number;
  id: unknown;
  escaped?: string;
  problem: string;
}

/** Restores' and purges' per-ID rejections carry counts and offenders like a plan's. */
const isRejection = (e: CliError) =>
  e.exitCode === EXIT.rejected && typeof (e.details as { counts?: unknown } | undefined)?.counts === 'object';
