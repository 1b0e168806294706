// plan, submit, status, watch, report: an ID list streamed in as NDJSON (POST /v1/operations takes
// up to 1,000,000 IDs that way, staged server-side), and an operation followed to its outcome.
import type { Command } from 'commander';
import { EXIT, countWord, exitForState, usageError } from '../exit-codes.ts';
import {
  ndjsonBody,
  openIds,
  collectIds,
  emptyIdList,
  idsByLine,
  inListLines,
  ListLines,
  withIds,
  type IdStats,
} from '../ids.ts';
import { inFlags, specOf, specOptions, type SpecFlags, type SubmitFlags } from '../spec.ts';
import { redisUrlProblem, submitViaQueue } from '../queue.ts';
import {
  ctxOf,
  durationMs,
  follow,
  needToken,
  outcomeLine,
  planLines,
  type Ctx,
  type PlanLike,
  act,
} from '../context.ts';
import { haltReasonText, offenderDetails, waitingText, type Offender, type Waiting } from '../output.ts';

/** Streams the ID list to POST /v1/operations as NDJSON. */
async function streamSubmission(ctx: Ctx, f: SpecFlags, dryRun: boolean) {
  needToken(ctx);
  const input = openIds(f.idsFile);
  const stats: IdStats = { lines: 0, ids: 0, blanks: new ListLines() };
  const stream = await withIds(ndjsonBody(input as AsyncIterable<Buffer>, specOf(f, dryRun), f.format, stats), stats);
  const { body, status } = await ctx.client
    .answer<Record<string, unknown>>('POST', '/v1/operations', {
      stream,
      contentType: 'application/x-ndjson',
      ...(f.idempotencyKey ? { headers: { 'idempotency-key': f.idempotencyKey } } : {}),
    })
    .catch((err: unknown) => {
      throw inFlags(inListLines(err, stats.blanks), f);
    })
    // Answered before the list ended (refused early, or a producer still writing to stdin): the
    // rest is not wanted, and an open stdin kept the CLI running after it had printed the answer.
    .finally(() => input.destroy());
  // 200, not 201: this idempotency key (with this body) made the operation before; nothing new.
  return { body, stats, replayed: status === 200 };
}

interface StatusView {
  id: string;
  kind: string;
  targetType: string;
  requestedBy: string;
  reason: string;
  ticket: string;
  state: string;
  currentWave: number | null;
  haltReason: string | null;
  bakeUntil?: string | null;
  throttled?: { cap: string; until: string } | null;
  waiting?: (Waiting & { detail: string }) | null;
  approvals?: { by: string; role: string }[];
  approvalsNeeded?: string | null;
  refused?: { command: string; code: string; message: string; by: string; at: string } | null;
  planHash: string | null;
  plan: PlanLike | null;
  waveProgress?: { wave: number; counts: Record<string, number> }[];
  links?: { report?: string | null };
  rejection?: { counts?: Record<string, number> } | null;
  unfinished?: {
    count: number;
    items: { resourceId: string; tenantId: string; state: string; lastError: string | null }[];
  };
}

/** Unfinished items `status` lists (the API gives the first 100; the items route pages through all). */
const UNFINISHED_SHOWN = 10;
interface ReportItem extends Offender {
  index: number;
  class: string;
}

interface OpView {
  id: string;
  state: string;
  planHash: string | null;
  plan: Parameters<typeof planLines>[0];
  kind?: string;
  targetType?: string;
  requiresBreakGlass?: boolean;
}

export function registerOperationCommands(program: Command) {
  specOptions(program.command('plan').description('Dry run: the plan for an ID list, nothing stored')).action(
    act(async (f: SpecFlags, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const { body, stats } = await streamSubmission(ctx, f, true);
      ctx.out.result({ ...body, submittedIds: stats.ids }, () => {
        ctx.out.line(
          `Dry run: ${stats.ids} ID${stats.ids === 1 ? '' : 's'} would be planned as follows (nothing was stored).`,
        );
        for (const l of planLines(body.plan as OpView['plan'], null, f.erasure ? 'erase' : 'delete')) ctx.out.line(l);
        // The same flags that made this plan: an erasure's dry run that said "submit --type app"
        // would, copied, have submitted a soft delete instead (a trial).
        ctx.out.line(`Submit it: blastgate submit --type ${f.type}${f.erasure ? ' --erasure' : ''} … (same IDs)`);
      });
      return EXIT.ok;
    }),
  );

  specOptions(program.command('submit').description('Submit a delete: the IDs are streamed (up to 1,000,000)'))
    .option('--idempotency-key <key>', 'makes a retried submit return the same operation')
    .option('--auto-start', 'start as soon as the approvals are in')
    .option('--wait', 'wait for an outcome (completed, rejected, halted, rolled back, paused)')
    .option('--timeout <duration>', 'with --wait: give up after this long (exit 13), e.g. 30m')
    .option('--via-queue', 'submit through the CI intake queue (BullMQ) instead of HTTP; IDs inline, ≤ 100,000')
    .option('--redis-url <url>', 'with --via-queue: Redis of the queue (default BLASTGATE_REDIS_URL)')
    .option('--queue-prefix <prefix>', 'with --via-queue: queue prefix (default BLASTGATE_QUEUE_PREFIX or blastgate)')
    .action(
      act(async (f: SubmitFlags, cmd: Command) => {
        const ctx = ctxOf(cmd);
        const timeoutMs = f.timeout ? durationMs(f.timeout) : undefined;
        let op: OpView;
        let submittedIds: number;
        let replayed = false;
        /** Why a replay's current state could not be read (the kept job's result is from plan time). */
        let stateUnknown: string | undefined;
        if (f.viaQueue) {
          const redisUrl = f.redisUrl ?? process.env.BLASTGATE_REDIS_URL;
          if (!redisUrl) throw usageError('--via-queue needs --redis-url or BLASTGATE_REDIS_URL');
          const badUrl = redisUrlProblem(redisUrl, f.redisUrl !== undefined ? '--redis-url' : 'BLASTGATE_REDIS_URL');
          if (badUrl) throw badUrl;
          const blanks = new ListLines();
          const ids = await collectIds(openIds(f.idsFile) as AsyncIterable<Buffer>, 100_000, blanks);
          if (!ids.length) throw emptyIdList();
          // The job's refusal names IDs by index, as the API's does: each also by its line in the file.
          const r = await submitViaQueue({
            redisUrl,
            prefix: f.queuePrefix ?? process.env.BLASTGATE_QUEUE_PREFIX ?? 'blastgate',
            token: needToken(ctx),
            operation: { ...specOf(f, false), ids },
            ...(f.idempotencyKey ? { jobId: f.idempotencyKey } : {}),
            timeoutMs: timeoutMs ?? 300_000,
            note: (text) => ctx.out.note(text),
          }).catch((err: unknown) => {
            throw inFlags(idsByLine(err, blanks), f);
          });
          op = {
            id: r.operationId,
            state: r.state,
            planHash: r.planHash,
            plan: r.plan as OpView['plan'],
            ...(r.links ? { links: r.links } : {}),
          };
          submittedIds = ids.length;
          replayed = r.replayed === true;
          // The job's result is the operation as it was planned, in brief: read it whole, as it is
          // now, as REST answers (a first run's --json had no links, itemCount or requestedBy; a
          // trial). For a replay, when that fails, the state is unknown, said so: the plan-time state
          // used to be printed as the current one (a cancelled operation as "planned", with a "Next:
          // approve" step). A new plan's state is the one it was just planned in.
          try {
            op = await ctx.client.get<OpView>(`/v1/operations/${encodeURIComponent(op.id)}`);
          } catch (err) {
            const e = err as Error & { code?: string };
            if (replayed) stateUnknown = `the API could not be read (${e.code ? `${e.code}: ` : ''}${e.message})`;
          }
        } else {
          const sent = await streamSubmission(ctx, f, false);
          op = sent.body as unknown as OpView;
          submittedIds = sent.stats.ids;
          replayed = sent.replayed;
        }
        if (!ctx.json) {
          if (stateUnknown)
            ctx.out.line(
              `Operation ${op.id}: its current state is unknown (${submittedIds} IDs submitted): ${stateUnknown}. ` +
                `It was ${op.state} when the job planned it; blastgate status ${op.id} shows its state now.`,
            );
          else ctx.out.line(`Operation ${op.id} is ${op.state} (${submittedIds} IDs submitted).`);
          if (replayed)
            ctx.out.line(
              `  A replay: idempotency key ${f.idempotencyKey} made this operation before; nothing new was planned.`,
            );
          for (const l of planLines(op.plan, op.planHash, f.erasure ? 'erase' : 'delete')) ctx.out.line(l);
          // With --auto-start the approvals start it: no operator start to ask for. No next step
          // from a state that may be stale.
          if (op.state === 'planned' && !stateUnknown)
            ctx.out.line(
              f.autoStart
                ? `Next: an approver runs  blastgate approve ${op.id}  (it starts once the approvals are in)`
                : `Next: an approver runs  blastgate approve ${op.id}  then an operator  blastgate start ${op.id}`,
            );
        }
        // In --json: state null, the plan-time state as stateAtPlan, and why (stateUnknown).
        const shown = stateUnknown ? { ...op, state: null, stateAtPlan: op.state } : op;
        const doc = {
          operation: shown,
          submittedIds,
          ...(replayed ? { replayed } : {}),
          ...(stateUnknown ? { stateUnknown } : {}),
        };
        if (!f.wait) {
          ctx.out.result(doc);
          return EXIT.ok;
        }
        const r = await follow(ctx, op.id, { ...(timeoutMs !== undefined ? { timeoutMs } : {}), quiet: ctx.json });
        ctx.out.result({ ...doc, outcome: r }, () => ctx.out.line(outcomeLine(r)));
        return r.exitCode;
      }),
    );

  program
    .command('status')
    .description('State, plan, per-wave progress and halt reason of an operation')
    .argument('<id>', 'operation ID')
    .option(
      '--exit-status',
      "exit with the outcome's code as watch does (0 completed, 10 rejected, 11 stopped, 12 paused); 0 while it runs",
    )
    .action(
      act(async (id: string, flags: { exitStatus?: boolean }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const op = await ctx.client.get<StatusView>(`/v1/operations/${encodeURIComponent(id)}`);
        ctx.out.result(op, () => {
          const wave = op.currentWave === null ? '' : ` · wave ${op.currentWave + 1}/${op.plan?.waves?.length ?? '?'}`;
          ctx.out.line(`${op.id} (${op.kind} ${op.targetType}, requested by ${op.requestedBy}): ${op.state}${wave}`);
          ctx.out.line(`  reason: ${op.reason} · ticket: ${op.ticket}`);
          if (op.haltReason) ctx.out.line(`  ${haltReasonText(op.state, op.haltReason)}`);
          if (op.approvalsNeeded) {
            const by = (op.approvals ?? []).map((a) => `${a.by} (${a.role})`).join(', ');
            ctx.out.line(`  approved by ${by || 'nobody yet'}; still needs ${op.approvalsNeeded}`);
          }
          if (op.bakeUntil) ctx.out.line(`  baking until ${op.bakeUntil}, then the next wave (probes permitting)`);
          if (op.throttled) ctx.out.line(`  held back by ${op.throttled.cap} until ${op.throttled.until}`);
          if (op.waiting) ctx.out.line(`  ${waitingText(op.waiting)}: ${op.waiting.detail}`);
          if (op.refused)
            ctx.out.line(
              `  ${op.refused.command} refused ${op.refused.code} (${op.refused.by}, ${op.refused.at}): ${op.refused.message}`,
            );
          for (const w of op.waveProgress ?? []) {
            const counts = Object.entries(w.counts).map(([k, n]) => `${countWord(k, op.state)} ${n}`);
            ctx.out.line(`  wave ${w.wave + 1}: ${counts.join(' · ') || 'no items'}`);
          }
          // What did not get where the state says (failed deletes, items not restored, what a halted
          // operation has not done): the halt reason only says how many, and points here.
          if (op.unfinished?.count) {
            ctx.out.line(`  unfinished: ${op.unfinished.count} item(s)`);
            for (const i of op.unfinished.items.slice(0, UNFINISHED_SHOWN))
              ctx.out.line(`    ${i.resourceId} (${i.tenantId}, ${i.state}): ${i.lastError ?? 'no error recorded'}`);
            if (op.unfinished.count > UNFINISHED_SHOWN)
              ctx.out.line(
                `    … ${op.unfinished.count - UNFINISHED_SHOWN} more: --json lists ${Math.min(op.unfinished.count, 100)}, GET /v1/operations/${op.id}/items?state=${[...new Set(op.unfinished.items.map((i) => i.state))].join(',')} pages through all`,
              );
          }
          if (op.state === 'rejected') {
            // What rejected it, as `list` says it (a trial: status said less than the list).
            const counts = Object.entries(op.rejection?.counts ?? {});
            const why = counts.filter(([c, k]) => c !== 'ok' && k > 0).map(([c, k]) => `${k} ${c}`);
            if (why.length)
              ctx.out.line(`  ${counts.reduce((t, [, k]) => t + k, 0)} submitted, rejected for ${why.join(', ')}`);
            ctx.out.line(`  full report: blastgate report ${op.id}  (GET ${op.links?.report})`);
          } else for (const l of planLines(op.plan, op.planHash, op.kind)) ctx.out.line(l);
        });
        // A status is read successfully whatever the state; a pipeline that branches on the outcome asks.
        return flags.exitStatus ? (exitForState(op.state) ?? EXIT.ok) : EXIT.ok;
      }),
    );

  program
    .command('watch')
    .description('Follow an operation live until it ends (exit code by outcome)')
    .argument('<id>', 'operation ID')
    .option('--timeout <duration>', 'give up after this long (exit 13)')
    .option('--after <cursor>', 'resume after this event id')
    .action(
      act(async (id: string, f: { timeout?: string; after?: string }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        // The server's cursors are event ids (whole numbers); anything else it refuses (400), which
        // came out as exit 1, an error of the server's, instead of a usage error.
        if (f.after !== undefined && !/^\d{1,18}$/.test(f.after))
          throw usageError(`--after must be an event id, a whole number as watch prints them (got "${f.after}")`);
        needToken(ctx);
        const r = await follow(ctx, id, {
          ...(f.timeout ? { timeoutMs: durationMs(f.timeout) } : {}),
          ...(f.after ? { after: f.after } : {}),
        });
        ctx.out.result({ event: 'outcome', data: r }, () => ctx.out.line(outcomeLine(r)));
        return r.exitCode;
      }),
    );

  program
    .command('report')
    .description('Every offending ID of a rejected plan (with --json: one JSON object per line)')
    .argument('<id>', 'operation ID of the rejected plan')
    .option('--class <class>', 'only this class (unknown, type_mismatch, …)')
    .action(
      act(async (id: string, f: { class?: string }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        let cursor: string | number | undefined;
        for (let page = 0; ; page++) {
          const r = await ctx.client.get<{
            counts: Record<string, number>;
            items: ReportItem[];
            nextCursor?: string | number | null;
          }>(`/v1/operations/${encodeURIComponent(id)}/report`, { class: f.class, limit: 5000, cursor });
          if (page === 0 && !ctx.json) {
            const counts = Object.entries(r.counts);
            // A plan that was not rejected has no offenders: say so rather than print an empty line.
            ctx.out.line(
              counts.length
                ? `counts: ${counts.map(([k, n]) => `${k} ${n}`).join(' · ')}`
                : `${id} has no offending IDs: its plan was not rejected (blastgate status ${id})`,
            );
            // The API's index, not submit's "line N" (which counts the file's lines from 1).
            if (counts.length)
              ctx.out.line('index (0-based, in the submitted list)\tid\tclass\tactual type\ttenant\tdetail');
          }
          for (const it of r.items)
            if (ctx.json) process.stdout.write(JSON.stringify(it) + '\n');
            else
              ctx.out.line(
                `${it.index}\t${it.escaped ?? it.id}\t${it.class}\t${it.actualType ?? ''}\t${it.tenantId ?? ''}\t` +
                  offenderDetails({ ...it, actualType: null }, it.class).join(', '),
              );
          if (r.nextCursor === undefined || r.nextCursor === null || !r.items.length) break;
          cursor = r.nextCursor;
        }
        return EXIT.ok;
      }),
    );
}
