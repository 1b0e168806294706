// approve (shows the plan and the hash it approves; confirms on a terminal), start, pause, resume,
// abort, rollback (each with a reason, kept in the audit log) and signal.
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { CliError, EXIT } from '../exit-codes.ts';
import { inBodyFlags } from '../spec.ts';
import { ctxOf, durationMs, follow, needToken, outcomeLine, planLines, type Ctx, act } from '../context.ts';

const opPath = (id: string, what: string) => `/v1/operations/${encodeURIComponent(id)}/${what}`;

async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}

interface Op {
  id: string;
  state: string;
  /** Answers to operator commands: what this one did (the server's `command`). */
  command?: {
    action: string;
    from: string;
    to: string;
    changed: boolean;
    approvalsNeeded?: string;
    warning?: string;
  };
  kind: string;
  targetType: string;
  requestedBy: string;
  reason: string;
  ticket: string;
  planHash: string | null;
  plan: Parameters<typeof planLines>[0];
  haltReason: string | null;
}

function printed(ctx: Ctx, verb: string, op: Op) {
  const c = op.command;
  // What this command did first: the state read afterwards may be another request's doing.
  const did = !c ? ` is ${op.state}` : c.changed ? ` ${c.from} → ${c.to}` : ` changed nothing (${c.from})`;
  const now = c && c.to !== op.state ? `; now ${op.state}` : '';
  ctx.out.result(op, () => ctx.out.line(`${verb}: ${op.id}${did}${now}${op.haltReason ? ` (${op.haltReason})` : ''}.`));
  // A warning goes to stderr in both modes: stdout stays the one document --json promises.
  if (c?.warning) process.stderr.write(`warning: ${c.warning}\n`);
}

/** Body fields of the commands, by the flag that gives each. */
const FLAGS: Record<string, string> = {
  'body.reason': '--reason',
  'body.comment': '--comment',
  'body.kind': '--kind',
  'body.tenantId': '--tenant',
  'body.detail': '--detail',
};

/** How the server's 409 tells to end a rollback; the CLI adds its own way. */
const END_ROLLBACK = 'endRollback: true';

/**
 * POSTs a command; a refusal of what a flag gave names the flag ("Invalid --reason: …"), not the
 * body field the CLI built, and one that tells how to end a rollback names the CLI's way too.
 */
async function command(ctx: Ctx, path: string, body: Record<string, unknown>): Promise<Op> {
  try {
    return await ctx.client.post<Op>(path, body);
  } catch (err) {
    const named = inBodyFlags(err, FLAGS, body);
    if (!(named instanceof CliError) || !named.message.includes(END_ROLLBACK)) throw named;
    const message = named.message.replace(END_ROLLBACK, `${END_ROLLBACK} (blastgate abort --end-rollback)`);
    throw new CliError(named.exitCode, named.code, message, named.details, named.status);
  }
}
export function registerControlCommands(program: Command) {
  program
    .command('approve')
    .description('Approve a planned operation: shows the plan and the plan hash being approved')
    .argument('<id>', 'operation ID')
    .option('--yes', 'approve without asking (needed when stdin is not a terminal)')
    .option('--comment <text>', 'kept with the approval')
    .action(
      act(async (id: string, f: { yes?: boolean; comment?: string }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        // The token's role first: a requester's approve printed the whole plan, then a 403 (a trial).
        const [me, op] = await Promise.all([
          ctx.client.get<{ name: string; role: string }>('/v1/auth/whoami'),
          ctx.client.get<Op>(`/v1/operations/${encodeURIComponent(id)}`),
        ]);
        if (me.role !== 'approver' && me.role !== 'admin')
          throw new CliError(
            EXIT.error,
            'FORBIDDEN',
            `token "${me.name}" has role ${me.role}: approving takes an approver (or admin) token; nothing was sent`,
            { role: me.role, allowedRoles: ['admin', 'approver'] },
          );
        if (!op.planHash)
          throw new CliError(EXIT.error, 'NO_PLAN', `${op.id} has no plan to approve (it is ${op.state})`);
        // Shown before anything is sent, on stderr in --json mode so stdout stays one document.
        const show = (s: string) => (ctx.json ? process.stderr.write(s + '\n') : ctx.out.line(s));
        if (!ctx.json || !f.yes) {
          show(`Approving ${op.id}: ${op.kind} ${op.targetType}, requested by ${op.requestedBy} (${op.state})`);
          show(`  reason: ${op.reason} · ticket: ${op.ticket}`);
          for (const l of planLines(op.plan, op.planHash, op.kind)) show(l);
        }
        if (!f.yes) {
          if (!process.stdin.isTTY)
            throw new CliError(
              EXIT.usage,
              'CONFIRMATION_REQUIRED',
              'not a terminal: pass --yes to approve without a prompt (after reviewing the plan above)',
            );
          if (!(await confirm(`Approve plan ${op.planHash}? [y/N] `)))
            throw new CliError(EXIT.error, 'NOT_APPROVED', 'not approved: nothing was sent');
        }
        const body = { planHash: op.planHash, ...(f.comment ? { comment: f.comment } : {}) };
        const after = await command(ctx, opPath(op.id, 'approve'), body);
        ctx.out.result({ ...after, approvedPlanHash: op.planHash }, () =>
          ctx.out.line(
            `Approved plan ${op.planHash}: ${after.id} is ${after.state}.` +
              (after.command?.approvalsNeeded
                ? ` It still needs ${after.command.approvalsNeeded} before it can start.`
                : ''),
          ),
        );
        return EXIT.ok;
      }),
    );

  program
    .command('start')
    .description('Start an approved operation')
    .argument('<id>', 'operation ID')
    .requiredOption('--reason <text>', 'why now (kept in the audit log)')
    .option('--wait', 'wait for an outcome (exit code by outcome)')
    .option('--timeout <duration>', 'with --wait: give up after this long (exit 13)')
    .action(
      act(async (id: string, f: { reason: string; wait?: boolean; timeout?: string }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const timeoutMs = f.timeout ? durationMs(f.timeout) : undefined;
        const op = await command(ctx, opPath(id, 'start'), { reason: f.reason });
        if (!f.wait) {
          printed(ctx, 'Started', op);
          return EXIT.ok;
        }
        ctx.out.line(`Started: ${op.id} is ${op.state}.`);
        const r = await follow(ctx, op.id, { ...(timeoutMs !== undefined ? { timeoutMs } : {}), quiet: ctx.json });
        ctx.out.result({ operation: op, outcome: r }, () => ctx.out.line(outcomeLine(r)));
        return r.exitCode;
      }),
    );

  for (const [name, path, description] of [
    ['pause', 'pause', 'Pause a running operation'],
    ['resume', 'resume', 'Resume a paused or halted operation'],
    ['abort', 'abort', 'Abort: before start cancels, after start halts (rolls back by default)'],
    ['rollback', 'rollback', 'Roll back everything the operation touched'],
  ] as const) {
    const c = program
      .command(name)
      .description(description)
      .argument('<id>', 'operation ID')
      .requiredOption('--reason <text>', 'why (kept in the audit log)');
    if (name === 'abort')
      c.option(
        '--end-rollback',
        'only while rolling back: end the rollback (rollback_incomplete), leaving deleted what it has not restored',
      );
    c.action(
      act(async (id: string, f: { reason: string; endRollback?: boolean }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const body = { reason: f.reason, ...(f.endRollback ? { endRollback: true } : {}) };
        printed(ctx, name, await command(ctx, opPath(id, path), body));
        return EXIT.ok;
      }),
    );
  }

  program
    .command('signal')
    .description('Report an external signal (e.g. a support ticket): halts a running operation')
    .argument('<id>', 'operation ID')
    .requiredOption('--kind <kind>', 'e.g. support_ticket, alert')
    .option('--tenant <id>', 'the affected tenant')
    .option('--detail <text>', 'what was observed')
    .action(
      act(async (id: string, f: { kind: string; tenant?: string; detail?: string }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const body = {
          kind: f.kind,
          ...(f.tenant ? { tenantId: f.tenant } : {}),
          ...(f.detail ? { detail: f.detail } : {}),
        };
        printed(ctx, 'Signal recorded', await command(ctx, opPath(id, 'signals'), body));
        return EXIT.ok;
      }),
    );
}
