// The operation spec the plan and submit commands build from their flags, and what the server
// says about it said again in terms of those flags.
import type { Command } from 'commander';
import { CliError, usageError } from './exit-codes.ts';
import type { IdFormat } from './ids.ts';
import { intArg, jsonArg } from './context.ts';

export interface SpecFlags {
  type: string;
  reason: string;
  ticket: string;
  idsFile?: string;
  format: IdFormat;
  waves?: string;
  bakeSeconds?: number;
  concurrency?: number;
  rollout?: Record<string, unknown>;
  haltPolicy?: Record<string, unknown>;
  erasure?: boolean;
  autoStart?: boolean;
  idempotencyKey?: string;
}

export interface SubmitFlags extends SpecFlags {
  wait?: boolean;
  timeout?: string;
  viaQueue?: boolean;
  redisUrl?: string;
  queuePrefix?: string;
}

export function specOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--type <type>', 'resource type every ID must be (e.g. app)')
    .requiredOption('--reason <text>', 'why this is being deleted')
    .requiredOption('--ticket <ref>', 'change ticket or incident reference')
    .option('--ids-file <file>', 'the IDs: one per line, or NDJSON ("id" or {"id": "..."}); - or omitted: stdin')
    .option('--format <format>', 'auto | text | ndjson', parseFormat, 'auto' as IdFormat)
    .option('--waves <steps>', 'wave steps, comma-separated (e.g. 1,10%,100%)')
    .option('--bake-seconds <n>', 'bake time between waves', intArg('--bake-seconds'))
    .option(
      '--concurrency <n>',
      'destructive calls in flight at once, per worker process (its chunks of the operation share them)',
      intArg('--concurrency', 1),
    )
    .option('--rollout <json>', 'the whole rollout policy as JSON (the flags above win)', jsonArg('--rollout'))
    .option('--halt-policy <json>', 'halt policy as JSON', jsonArg('--halt-policy'))
    .option('--erasure', 'compliance erasure (hard delete; admin + second approver)');
}

function parseFormat(v: string): IdFormat {
  if (v === 'auto' || v === 'text' || v === 'ndjson') return v;
  throw usageError(`--format must be auto, text or ndjson (got "${v}")`);
}

export function specOf(f: SpecFlags, dryRun: boolean): Record<string, unknown> {
  const rollout: Record<string, unknown> = { ...f.rollout };
  if (f.waves) rollout.waves = f.waves.split(',').map((s) => s.trim());
  if (f.bakeSeconds !== undefined) rollout.bakeSeconds = f.bakeSeconds;
  if (f.concurrency !== undefined) rollout.concurrency = f.concurrency;
  return {
    targetType: f.type,
    reason: f.reason,
    ticket: f.ticket,
    ...(Object.keys(rollout).length ? { rollout } : {}),
    ...(f.haltPolicy ? { haltPolicy: f.haltPolicy } : {}),
    ...(f.erasure ? { erasure: true } : {}),
    ...(f.autoStart ? { autoStart: true } : {}),
    ...(dryRun ? { dryRun: true } : {}),
  };
}

/** How the server names the Idempotency-Key header in a refusal (the --idempotency-key flag). */
export const IDEMPOTENCY_HEADER = 'headers.idempotency-key';

/** The spec fields specOf builds, each with the flag that gives it. */
const FLAG_FIELDS: [flag: string, field: string][] = [
  ['--type', 'targetType'],
  ['--reason', 'reason'],
  ['--ticket', 'ticket'],
  ['--waves', 'rollout.waves'],
  ['--bake-seconds', 'rollout.bakeSeconds'],
  ['--concurrency', 'rollout.concurrency'],
  ['--rollout', 'rollout'],
  ['--halt-policy', 'haltPolicy'],
  ['--erasure', 'erasure'],
  ['--auto-start', 'autoStart'],
];

/** How a refusal names a field a flag gave: the flag, its text in the message, and the value when it is one of a list's. */
interface Shown {
  flag: string;
  text: string;
  value?: string | number;
}

/** The longest part of a list's value a refusal quotes. */
const SHOWN_VALUE_CHARS = 60;

/**
 * How to name `rest`, the path inside what `flag` gave (`given`): nothing is the flag itself; an
 * index into a list the flag gave (`--delivery 7 abc`, `--waves 1,abc`) is the value at it, as
 * typed (`--delivery "abc"`): "Invalid --delivery (0)" named a position in a list the user never
 * saw (a new-user trial). Anything deeper (inside a JSON flag's object) is the path after the flag.
 */
function flagText(flag: string, rest: string, given?: unknown): Shown {
  if (rest === '') return { flag, text: flag };
  const value = /^\d+$/.test(rest) && Array.isArray(given) ? (given as unknown[])[Number(rest)] : undefined;
  if (typeof value === 'string' || typeof value === 'number') {
    const s = String(value);
    const quoted = JSON.stringify(s.length > SHOWN_VALUE_CHARS ? `${s.slice(0, SHOWN_VALUE_CHARS)}…` : s);
    return { flag, text: `${flag} ${quoted}`, value };
  }
  return { flag, text: `${flag} (${rest})` };
}

/** The value at a dotted path of a body the CLI built (`scope.resourceTypes`), if there is one. */
const valueAt = (body: unknown, path: string): unknown =>
  path
    .split('.')
    .reduce<unknown>(
      (v, k) => (v && typeof v === 'object' && Object.hasOwn(v, k) ? (v as Record<string, unknown>)[k] : undefined),
      body,
    );

/**
 * A server refusal (details[].field) said again in the CLI's terms: each field a flag gave is
 * named by it, in the message and as `flag` in its detail (with `value` when it names one value of
 * a list). `shown` says which flag gave a field, and how to name it (flagText).
 */
export function withFlagNames(err: unknown, shown: (field: string) => Shown | undefined): unknown {
  if (!(err instanceof CliError) || err.status === undefined) return err;
  // A list of fields (a validation's), or one object naming its field (a refusal such as
  // UNKNOWN_TARGET_TYPE, whose typo'd --type was the one a trial found named by no flag).
  const one = !Array.isArray(err.details) && typeof (err.details as { field?: unknown } | null)?.field === 'string';
  if (!Array.isArray(err.details) && !one) return err;
  const named = (d: { field?: unknown }) => {
    const s = typeof d?.field === 'string' ? shown(d.field) : undefined;
    if (!s) return d;
    return { ...d, flag: s.flag, ...(s.value !== undefined && !('value' in d) ? { value: s.value } : {}) };
  };
  const details = one ? [named(err.details as { field?: unknown })] : (err.details as { field?: unknown }[]).map(named);
  // Longest field first, so that "line 1.rollout" never rewrites part of "line 1.rollout.waves".
  const fields = details
    .map((d) => d.field)
    .filter((x): x is string => typeof x === 'string' && shown(x) !== undefined)
    .sort((a, b) => b.length - a.length);
  const message = fields.reduce((m, field) => m.split(field).join(shown(field)!.text), err.message);
  return new CliError(err.exitCode, err.code, message, one ? details[0] : details, err.status);
}

/**
 * withFlagNames for a JSON body the CLI built from flags: `flags` maps a body field (`body.reason`)
 * to its flag; a field inside one (`body.scope.tenants.0`) is named by the flag that gave it, and
 * one value of a list the flag gave by that value, read from `body` (what was sent).
 */
export function inBodyFlags(err: unknown, flags: Record<string, string>, body?: unknown): unknown {
  return withFlagNames(err, (field) => {
    const key = Object.keys(flags)
      .filter((k) => field === k || field.startsWith(`${k}.`))
      .sort((a, b) => b.length - a.length)[0];
    if (!key) return undefined;
    const given = key.startsWith('body.') ? valueAt(body, key.slice('body.'.length)) : undefined;
    return flagText(flags[key]!, field === key ? '' : field.slice(key.length + 1), given);
  });
}

/**
 * A server refusal of the spec line specOf built ("Invalid line 1.reason: …") names the flag that
 * gave the field instead ("Invalid --reason: …"): the user wrote flags, not a line 1. A rollout
 * field came from its own flag when given, else from --rollout.
 */
export function inFlags(err: unknown, f: SpecFlags): unknown {
  const spec = specOf(f, false);
  const given: Record<string, boolean> = {
    '--waves': f.waves !== undefined,
    '--bake-seconds': f.bakeSeconds !== undefined,
    '--concurrency': f.concurrency !== undefined,
  };
  return withFlagNames(err, (field) => {
    if (field === IDEMPOTENCY_HEADER) return { flag: '--idempotency-key', text: '--idempotency-key' };
    // `line 1.` in a streamed submission's refusal; `operation.` in the intake queue's (the job's operation).
    // A field with neither names the spec's own (UNKNOWN_TARGET_TYPE: targetType).
    const prefix = ['line 1.', 'operation.'].find((p) => field.startsWith(p));
    const path = prefix ? field.slice(prefix.length) : field;
    const hit = FLAG_FIELDS.find(
      ([flag, key]) => (path === key || path.startsWith(`${key}.`)) && (!key.startsWith('rollout.') || given[flag]),
    );
    if (!hit) return undefined;
    // A value of a list the flag gave (--waves 1,abc) by that value; deeper, the spec's path (--rollout (rollout.waves.1)).
    const rest = path.slice(hit[1].length + 1);
    if (path !== hit[1] && /^\d+$/.test(rest)) {
      const named = flagText(hit[0], rest, valueAt(spec, hit[1]));
      if (named.value !== undefined) return named;
    }
    return { flag: hit[0], text: path === hit[1] ? hit[0] : `${hit[0]} (${path})` };
  });
}
