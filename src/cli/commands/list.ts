// list: the operations, newest first (GET /v1/operations), one line each — what an operator asks
// first ("what is running, what is waiting for me, what halted?"), without an operation ID to hand.
import type { Command } from 'commander';
import { EXIT } from '../exit-codes.ts';
import { waitingText, type Waiting } from '../output.ts';
import { inBodyFlags } from '../spec.ts';
import { act, ctxOf, intArg, needToken, type GlobalFlags } from '../context.ts';

interface Summary {
  id: string;
  kind: string;
  targetType: string;
  state: string;
  ticket: string;
  requestedBy: string;
  itemCount: number;
  tenantCount: number;
  currentWave: number | null;
  waveCount: number;
  haltReason: string | null;
  bakeUntil: string | null;
  throttled: { cap: string; until: string } | null;
  waiting: Waiting | null;
  progress: { items: number; done: number; failed: number; restored: number; restoreFailed: number };
  rejectionSummary: { submitted: number; counts: Record<string, number> } | null;
  createdAt: string;
}

/** A refusal of a query parameter names the flag that gave it. */
const LIST_FLAGS: Record<string, string> = {
  'querystring.state': '--state',
  'querystring.kind': '--kind',
  'querystring.limit': '--limit',
  'querystring.cursor': '--cursor',
};
/** Characters of a restore's last error on a waiting operation's line (status shows it whole). */
const WAIT_ERROR_CHARS = 80;
/** Characters of a halt reason shown under its operation (status shows it whole). */
const REASON_SHOWN = 160;

const n = (x: number) => x.toLocaleString('en');

/** A value as a shell word: quoted when it holds anything a shell would read. */
const word = (v: string) => (/^[\w@%+=:,./-]+$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`);

/**
 * The command for the next page, with the flags this one was given on its command line: `--url`
 * and `--token-file` too (without them, a trial's copy of the line went to the default address
 * with no token), never `--token` (a command line is visible to other users of the machine).
 */
function nextPageCommand(g: GlobalFlags, f: { state?: string[]; kind?: string[]; limit?: number }, cursor: string) {
  return [
    'blastgate',
    ...(g.url ? [`--url ${word(g.url)}`] : []),
    ...(g.tokenFile ? [`--token-file ${word(g.tokenFile)}`] : []),
    'list',
    ...(f.state ?? []).map((s) => `--state ${word(s)}`),
    ...(f.kind ?? []).map((k) => `--kind ${word(k)}`),
    ...(f.limit !== undefined ? [`--limit ${f.limit}`] : []),
    `--cursor ${cursor}`,
  ].join(' ');
}

/** "running · wave 3/5 · 310 of 2,000 done, 2 failed · 40 tenants" */
function progressText(o: Summary): string {
  if (o.rejectionSummary) {
    const why = Object.entries(o.rejectionSummary.counts).map(([c, k]) => `${n(k)} ${c}`);
    return `${o.state} (${n(o.rejectionSummary.submitted)} submitted: ${why.join(', ')})`;
  }
  const p = o.progress;
  const parts = [o.state];
  if (o.currentWave !== null) parts.push(`wave ${o.currentWave + 1}/${o.waveCount}`);
  // Why it does not move now, as status says it (a trial: list showed a held-back run as plain running).
  if (o.bakeUntil) parts.push(`bake until ${o.bakeUntil}`);
  if (o.throttled) parts.push(`held back by ${o.throttled.cap} until ${o.throttled.until}`);
  // Redis or the workers away, held items, restore retries: a trial's list read plain `running`.
  if (o.waiting) parts.push(waitingText(o.waiting, WAIT_ERROR_CHARS));
  const counts = [`${n(p.done)} of ${n(p.items)} done`];
  if (p.failed) counts.push(`${n(p.failed)} failed`);
  if (p.restored) counts.push(`${n(p.restored)} restored`);
  if (p.restoreFailed) counts.push(`${n(p.restoreFailed)} not restored`);
  parts.push(counts.join(', '), `${n(o.tenantCount)} tenant${o.tenantCount === 1 ? '' : 's'}`);
  return parts.join(' · ');
}

export function registerListCommand(program: Command) {
  program
    .command('list')
    .description('Operations, newest first: state, progress, ticket and requester (GET /v1/operations)')
    .option('--state <states...>', 'only these states (running, paused, halted, planned, approved, …)')
    .option('--kind <kinds...>', 'only these kinds: delete, erase, restore, purge')
    .option('--limit <n>', 'at most this many (1-200, default 20)', intArg('--limit', 1, 200))
    .option('--cursor <id>', 'the page after this operation (the last line says which)')
    .action(
      act(async (f: { state?: string[]; kind?: string[]; limit?: number; cursor?: string }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const q = new URLSearchParams();
        // `--state running,paused` and `--state running paused` alike, as the API takes both.
        for (const s of f.state ?? []) q.append('state', s);
        for (const k of f.kind ?? []) q.append('kind', k);
        q.set('limit', String(f.limit ?? 20));
        if (f.cursor) q.set('cursor', f.cursor);
        const r = await ctx.client
          .get<{ items: Summary[]; nextCursor: string | null }>(`/v1/operations?${q.toString()}`)
          .catch((err: unknown) => {
            throw inBodyFlags(err, LIST_FLAGS);
          });
        ctx.out.result(r, () => {
          // Nothing printed at all reads as a command that did nothing.
          if (r.items.length === 0)
            ctx.out.line(
              `No operations${f.state?.length ? ` in state ${f.state.join(', ')}` : ''}${f.kind?.length ? ` of kind ${f.kind.join(', ')}` : ''}${f.cursor ? ` after ${f.cursor}` : ''}.`,
            );
          for (const o of r.items) {
            ctx.out.line(
              `${o.id}  ${o.kind} ${o.targetType}  ${progressText(o)}  ${o.ticket} · ${o.requestedBy} · ${o.createdAt}`,
            );
            if (o.haltReason)
              ctx.out.line(
                `  ${o.haltReason.length > REASON_SHOWN ? `${o.haltReason.slice(0, REASON_SHOWN)}… (blastgate status ${o.id})` : o.haltReason}`,
              );
          }
          if (r.nextCursor)
            ctx.out.line(`More: ${nextPageCommand(cmd.optsWithGlobals<GlobalFlags>(), f, r.nextCursor)}`);
          // Between two waves an operation is `baking`, not `running`: a trial's `--state running`
          // found nothing while a delete was three waves in.
          const states = (f.state ?? []).flatMap((s) => s.split(','));
          if (states.includes('running') && !states.includes('baking'))
            ctx.out.line(
              '(Between two waves an operation is baking, not running: add --state baking to see those too.)',
            );
        });
        return EXIT.ok;
      }),
    );
}
