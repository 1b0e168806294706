// restore, purge (both plan an operation that then goes through approve/start like a delete) and
// tokens (list, create, rotate, revoke). A created or rotated token's secret is printed once: it
// is the result the caller asked for. The CLI's own token is never printed.
import type { Command } from 'commander';
import { CliError, EXIT, usageError } from '../exit-codes.ts';
import { IDEMPOTENCY_HEADER, inBodyFlags } from '../spec.ts';
import { collectIds, emptyIdList, inListLines, ListLines, openIds } from '../ids.ts';
import { writeWarning } from '../output.ts';
import {
  ctxOf,
  durationMs,
  follow,
  intArg,
  needToken,
  outcomeLine,
  planLines,
  type Ctx,
  type PlanLike,
  act,
} from '../context.ts';

interface Planned {
  id: string;
  kind?: string;
  state?: string;
  dryRun?: boolean;
  plan?: PlanLike | null;
  planHash?: string | null;
}
interface TokenView {
  id: string;
  name: string;
  role: string;
  status: string;
  expiresAt?: string | null;
  token?: string;
  unknownScope?: { tenants?: string[]; resourceTypes?: string[] };
}

interface ScopeFlags {
  tenant?: string;
  deletedSince?: string;
  operation?: string;
  type?: string;
  idsFile?: string;
  reason: string;
  ticket: string;
  dryRun?: boolean;
  idempotencyKey?: string;
  wait?: boolean;
  timeout?: string;
  waves?: string;
  bakeSeconds?: number;
  concurrency?: number;
}

function scopeOptions(cmd: Command, what: string): Command {
  return cmd
    .requiredOption('--reason <text>', `why this is being ${what}`)
    .requiredOption('--ticket <ref>', 'incident or change ticket')
    .option('--tenant <id>', `scope: everything of this tenant that Blastgate deleted`)
    .option('--deleted-since <time>', 'with --tenant: only what was deleted at or after this time (ISO 8601)')
    .option('--operation <id>', 'scope: everything this (ended) delete operation deleted')
    .option('--type <type>', 'scope, with --ids-file: the type every ID must be')
    .option('--ids-file <file>', 'with --type: the IDs (one per line or NDJSON; - for stdin; up to 100,000)')
    .option(
      '--waves <steps>',
      'wave steps, comma-separated (e.g. 10%,100%; default: a restore 10%,100%, a purge as a delete)',
    )
    .option('--bake-seconds <n>', 'bake time between waves', intArg('--bake-seconds'))
    .option('--concurrency <n>', 'calls in flight at once per worker process', intArg('--concurrency', 1))
    .option('--dry-run', 'the plan only, nothing stored')
    .option('--idempotency-key <key>', 'makes a retry return the same operation')
    .option('--wait', 'wait for an outcome (after approval and start)')
    .option('--timeout <duration>', 'with --wait: give up after this long (exit 13)');
}

/** The flag that gives each field of a restore's or a purge's body: a refusal names it. */
const SCOPE_FLAGS: Record<string, string> = {
  'body.reason': '--reason',
  'body.ticket': '--ticket',
  'body.tenantId': '--tenant',
  'body.deletedSince': '--deleted-since',
  'body.operationId': '--operation',
  'body.targetType': '--type',
  // A type the registry does not declare (UNKNOWN_TARGET_TYPE) names the body's field bare.
  targetType: '--type',
  'body.asOf': '--as-of',
  'body.dueBefore': '--due-before',
  'body.rollout.waves': '--waves',
  'body.rollout.bakeSeconds': '--bake-seconds',
  'body.rollout.concurrency': '--concurrency',
  [IDEMPOTENCY_HEADER]: '--idempotency-key',
};
/** The same for `tokens create`. */
const TOKEN_FLAGS: Record<string, string> = {
  'body.name': '--name',
  'body.role': '--role',
  'body.expiresAt': '--expires-at',
  'body.scope.resourceTypes': '--scope-types',
  'body.scope.tenants': '--scope-tenants',
};

async function scopeBody(
  f: ScopeFlags,
  lines: ListLines,
  verb: 'restore' | 'purge',
  dueBefore?: unknown,
): Promise<Record<string, unknown>> {
  // No scope, or two, is a usage error here, as a missing flag is (exit 2), not a round trip that
  // exits 1 naming body fields.
  const scopes = [
    f.tenant && '--tenant',
    f.operation && '--operation',
    (f.idsFile || f.type) && '--type/--ids-file',
    dueBefore && '--due-before',
  ].filter((x): x is string => Boolean(x));
  const choices = `--tenant, --operation, or --type with --ids-file${verb === 'purge' ? ', or --due-before' : ''}`;
  if (scopes.length === 0) throw usageError(`give a scope: ${choices}`);
  if (scopes.length > 1) throw usageError(`give one scope, not ${scopes.join(' and ')}: ${choices}`);
  if (f.deletedSince && !f.tenant) throw usageError('--deleted-since goes with --tenant');
  if (f.idsFile && !f.type) throw usageError('--ids-file needs --type (the type every ID must be)');
  // --type without --ids-file reads stdin, as submit does (README: IDs come from --ids-file or
  // stdin; a trial's `… | blastgate restore --type app` was refused); a terminal is a usage error.
  const ids = f.type ? await collectIds(openIds(f.idsFile) as AsyncIterable<Buffer>, 100_000, lines) : undefined;
  if (ids?.length === 0) throw emptyIdList();
  const rollout = {
    ...(f.waves ? { waves: f.waves.split(',').map((x) => x.trim()) } : {}),
    ...(f.bakeSeconds !== undefined ? { bakeSeconds: f.bakeSeconds } : {}),
    ...(f.concurrency !== undefined ? { concurrency: f.concurrency } : {}),
  };
  return {
    reason: f.reason,
    ticket: f.ticket,
    ...(f.tenant ? { tenantId: f.tenant } : {}),
    ...(f.deletedSince ? { deletedSince: f.deletedSince } : {}),
    ...(f.operation ? { operationId: f.operation } : {}),
    ...(f.type ? { targetType: f.type } : {}),
    ...(ids ? { ids } : {}),
    ...(Object.keys(rollout).length ? { rollout } : {}),
    ...(f.dryRun ? { dryRun: true } : {}),
  };
}

async function planned(
  ctx: Ctx,
  verb: 'restore' | 'purge',
  f: ScopeFlags,
  extra: Record<string, unknown>,
): Promise<number> {
  const lines = new ListLines();
  // Parsed before anything is sent: a bad --timeout is a usage error, not one after the plan.
  const timeoutMs = f.timeout ? durationMs(f.timeout) : undefined;
  const body = { ...(await scopeBody(f, lines, verb, extra.dueBefore)), ...extra };
  needToken(ctx);
  const op = await ctx.client
    .post<Planned>(`/v1/${verb}s`, body, f.idempotencyKey ? { 'idempotency-key': f.idempotencyKey } : undefined)
    .catch((err: unknown) => {
      // IDs the server names by index (INVALID_IDS, a rejection's offenders) get their file line.
      const e = inBodyFlags(f.idsFile ? inListLines(err, lines) : err, SCOPE_FLAGS, body);
      if (!(e instanceof CliError)) throw e;
      // A rejected dry run is recorded by this same command without --dry-run (not by `submit`,
      // which would plan a delete of these IDs).
      const out = f.dryRun
        ? new CliError(
            e.exitCode,
            e.code,
            e.message,
            e.details,
            e.status,
            `the same \`blastgate ${verb}\` without --dry-run`,
          )
        : e;
      out.fromScope = !f.type;
      throw out;
    });
  // With --wait the operation and its plan are printed first too (not in --json, whose one result
  // comes at the end): a restore waits for an approver and a start by others, who need its ID.
  if (!op.dryRun && f.wait && !ctx.json) printPlanned(ctx, op, verb, extra);
  if (op.dryRun || !f.wait) {
    // --json: a dry run's {dryRun, plan} as the API gives it; an operation as `submit` prints one.
    ctx.out.result(op.dryRun ? op : { operation: op }, () => printPlanned(ctx, op, verb, extra));
    return EXIT.ok;
  }
  const r = await follow(ctx, op.id, { ...(timeoutMs !== undefined ? { timeoutMs } : {}), quiet: ctx.json });
  ctx.out.result({ operation: op, outcome: r }, () => ctx.out.line(outcomeLine(r)));
  return r.exitCode;
}

/** What a planned restore or purge (or a dry run) is, and who does what next. */
function printPlanned(ctx: Ctx, op: Planned, verb: 'restore' | 'purge', extra: Record<string, unknown>) {
  ctx.out.line(op.dryRun ? 'Dry run (nothing stored):' : `Operation ${op.id} (${op.kind}) is ${op.state}.`);
  for (const l of planLines(op.plan, op.planHash, verb)) ctx.out.line(l);
  // With --auto-start the approvals start it: no operator start to ask for.
  if (op.state === 'planned')
    ctx.out.line(
      extra.autoStart
        ? `Next: blastgate approve ${op.id} (it starts once the approvals are in)`
        : `Next: blastgate approve ${op.id}, then blastgate start ${op.id}`,
    );
}

export function registerAdminCommands(program: Command) {
  scopeOptions(program.command('restore').description('Restore what Blastgate deleted'), 'restored')
    .option('--as-of <time>', 'back to the last snapshot taken before this time (ISO 8601)')
    .option('--auto-start', 'start as soon as the approvals are in')
    .action(
      act(async (f: ScopeFlags & { asOf?: string; autoStart?: boolean }, cmd: Command) => {
        return planned(ctxOf(cmd), 'restore', f, {
          ...(f.asOf ? { asOf: f.asOf } : {}),
          ...(f.autoStart ? { autoStart: true } : {}),
        });
      }),
    );

  scopeOptions(program.command('purge').description('Plan a purge (hard delete) of what is past retention'), 'purged')
    .option('--due-before <time>', 'scope: everything whose retention ends by then (ISO 8601)')
    .action(
      act(async (f: ScopeFlags & { dueBefore?: string }, cmd: Command) => {
        return planned(ctxOf(cmd), 'purge', f, f.dueBefore ? { dueBefore: f.dueBefore } : {});
      }),
    );

  const tokens = program.command('tokens').description('API tokens (admin)');
  tokens
    .command('list')
    .description('All tokens (never their secrets)')
    .action(
      act(async (_f: unknown, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const r = await ctx.client.get<{ items: TokenView[] }>('/v1/admin/tokens');
        ctx.out.result(r, () => {
          for (const t of r.items)
            ctx.out.line(
              `${t.id}  ${t.role.padEnd(9)} ${t.status.padEnd(8)} ${t.name}${t.expiresAt ? `  expires ${t.expiresAt}` : ''}`,
            );
        });
        return EXIT.ok;
      }),
    );
  tokens
    .command('create')
    .description('Create a token: its secret is shown once')
    .requiredOption('--name <name>', 'who or what uses it')
    .requiredOption('--role <role>', 'viewer | requester | approver | operator | admin')
    .option('--expires-at <time>', 'stops working at this time (ISO 8601)')
    .option('--scope-types <types>', 'requester scope: resource types, comma-separated')
    .option('--scope-tenants <ids>', 'requester scope: tenants, comma-separated')
    .action(
      act(
        async (
          f: { name: string; role: string; expiresAt?: string; scopeTypes?: string; scopeTenants?: string },
          cmd: Command,
        ) => {
          const ctx = ctxOf(cmd);
          needToken(ctx);
          const list = (s?: string) =>
            s
              ?.split(',')
              .map((x) => x.trim())
              .filter(Boolean);
          const scope = {
            ...(f.scopeTypes ? { resourceTypes: list(f.scopeTypes) } : {}),
            ...(f.scopeTenants ? { tenants: list(f.scopeTenants) } : {}),
          };
          const body = {
            name: f.name,
            role: f.role,
            ...(f.expiresAt ? { expiresAt: f.expiresAt } : {}),
            ...(Object.keys(scope).length ? { scope } : {}),
          };
          const t = await ctx.client.post<TokenView>('/v1/admin/tokens', body).catch((err: unknown) => {
            throw inBodyFlags(err, TOKEN_FLAGS, body);
          });
          ctx.out.result(t, () => {
            ctx.out.line(`Created token ${t.id} (${t.role}) for ${t.name}. Its secret, shown only now:`);
            ctx.out.line(String(t.token));
          });
          // On stderr, as the CLI's other warnings: stdout is the secret a script reads.
          const u = t.unknownScope;
          if (u) {
            const named = [
              ...(u.tenants ? [`no such tenant in the registry: ${u.tenants.join(', ')}`] : []),
              ...(u.resourceTypes ? [`no such resource type declared: ${u.resourceTypes.join(', ')}`] : []),
            ];
            const message = `${named.join('; ')}: the token can submit nothing of those until they exist (a typo? revoke it and create it again)`;
            writeWarning(ctx.json, { code: 'UNKNOWN_SCOPE', ...u, message });
          }
          return EXIT.ok;
        },
      ),
    );
  tokens
    .command('rotate')
    .description('New secret for a token; the old one works for --grace-seconds')
    .argument('<id>', 'token ID')
    .option('--grace-seconds <n>', 'how long the old secret keeps working (default 86400)', intArg('--grace-seconds'))
    .action(
      act(async (id: string, f: { graceSeconds?: number }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const body = f.graceSeconds === undefined ? {} : { graceSeconds: f.graceSeconds };
        const t = await ctx.client.post<TokenView>(`/v1/admin/tokens/${encodeURIComponent(id)}/rotate`, body);
        ctx.out.result(t, () => {
          ctx.out.line(`Rotated token ${id}. Its new secret, shown only now:`);
          ctx.out.line(String(t.token));
        });
        return EXIT.ok;
      }),
    );
  tokens
    .command('revoke')
    .description('Revoke a token for good')
    .argument('<id>', 'token ID')
    .action(
      act(async (id: string, _f: unknown, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const r = await ctx.client.request<Record<string, unknown>>(
          'DELETE',
          `/v1/admin/tokens/${encodeURIComponent(id)}`,
        );
        ctx.out.result(r, () => ctx.out.line(`Revoked token ${id}.`));
        return EXIT.ok;
      }),
    );
}
