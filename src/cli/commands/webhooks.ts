// webhooks (admin): list the endpoints, read one's delivery log, and send its failed deliveries
// again once its receiver is back (POST /v1/admin/webhooks/{id}/redeliver). Registering and
// changing endpoints stays with the API: it shows a signing secret once, which belongs in a secret
// store rather than a terminal's scrollback.
import type { Command } from 'commander';
import { EXIT, usageError } from '../exit-codes.ts';
import { inBodyFlags } from '../spec.ts';
import { act, ctxOf, intArg, needToken } from '../context.ts';

interface EndpointView {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  deletedAt: string | null;
  deliveries?: { pending: number; failed: number; lastFailedAt: string | null };
}
interface DeliveryView {
  id: string;
  eventType: string;
  operationId: string | null;
  status: string;
  attempts: number;
  lastError: string | null;
  updatedAt: string;
}

const STATUSES = ['pending', 'delivered', 'failed', 'cancelled'];
/** A refusal of a field names the flag that gave it. */
const REDELIVER_FLAGS: Record<string, string> = { 'body.reason': '--reason', 'body.deliveryIds': '--delivery' };

const path = (id: string, rest = '') => `/v1/admin/webhooks/${encodeURIComponent(id)}${rest}`;

export function registerWebhookCommands(program: Command) {
  const webhooks = program.command('webhooks').description('Webhook endpoints and their deliveries (admin)');
  webhooks
    .command('list')
    .description('The endpoints (never their secrets)')
    .action(
      act(async (_f: unknown, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const r = await ctx.client.get<{ items: EndpointView[] }>('/v1/admin/webhooks');
        ctx.out.result(r, () => {
          for (const e of r.items) {
            ctx.out.line(`${e.id}  ${e.enabled ? 'enabled ' : 'disabled'}  ${e.url}  ${e.events.join(',')}`);
            const d = e.deliveries;
            if (d?.failed)
              ctx.out.line(
                `  ${d.failed} failed${d.lastFailedAt ? ` (the last at ${d.lastFailedAt})` : ''}: blastgate webhooks redeliver ${e.id} --reason "…"`,
              );
            if (d?.pending) ctx.out.line(`  ${d.pending} pending`);
          }
        });
        return EXIT.ok;
      }),
    );
  webhooks
    .command('deliveries')
    .description("An endpoint's delivery log, oldest first")
    .argument('<id>', 'endpoint ID')
    .option('--status <status>', STATUSES.join(' | '))
    .option('--after <delivery>', 'deliveries after this id (paging)', intArg('--after'))
    .option('--limit <n>', 'at most this many (1-1000, default 100)', intArg('--limit', 1, 1000))
    .action(
      act(async (id: string, f: { status?: string; after?: number; limit?: number }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        if (f.status && !STATUSES.includes(f.status))
          throw usageError(`--status must be one of ${STATUSES.join(', ')}, not "${f.status}"`);
        needToken(ctx);
        const q = new URLSearchParams({
          ...(f.status ? { status: f.status } : {}),
          ...(f.after !== undefined ? { after: String(f.after) } : {}),
          ...(f.limit !== undefined ? { limit: String(f.limit) } : {}),
        }).toString();
        const r = await ctx.client.get<{ items: DeliveryView[]; nextAfter: number | null }>(
          path(id, `/deliveries${q ? `?${q}` : ''}`),
        );
        ctx.out.result(r, () => {
          // Nothing printed at all read as a command that did nothing (a trial).
          if (r.items.length === 0)
            ctx.out.line(
              `No ${f.status ? `${f.status} ` : ''}deliveries${f.after !== undefined ? ` after ${f.after}` : ''}.`,
            );
          for (const d of r.items)
            ctx.out.line(
              `${d.id}  ${d.status.padEnd(9)} ${String(d.attempts).padStart(2)} attempts  ${d.eventType}` +
                `${d.operationId ? ` ${d.operationId}` : ''}${d.lastError && d.status !== 'delivered' ? `  last: ${d.lastError}` : ''}`,
            );
          if (r.nextAfter !== null) ctx.out.line(`More: blastgate webhooks deliveries ${id} --after ${r.nextAfter}`);
        });
        return EXIT.ok;
      }),
    );
  webhooks
    .command('redeliver')
    .description("Send an endpoint's failed deliveries again, each with a fresh series of attempts")
    .argument('<id>', 'endpoint ID')
    .requiredOption('--reason <text>', 'why (kept in the audit log)')
    .option(
      '--delivery <ids...>',
      'only these deliveries (failed or cancelled ones); without it, the oldest 1,000 failed ones',
    )
    .action(
      act(async (id: string, f: { reason: string; delivery?: string[] }, cmd: Command) => {
        const ctx = ctxOf(cmd);
        needToken(ctx);
        const ids = f.delivery
          ?.flatMap((d) => d.split(','))
          .map((d) => d.trim())
          .filter(Boolean);
        const body = { reason: f.reason, ...(ids?.length ? { deliveryIds: ids } : {}) };
        const r = await ctx.client
          .post<{ redelivered: number; deliveryIds: string[]; more: boolean }>(path(id, '/redeliver'), body)
          .catch((err: unknown) => {
            throw inBodyFlags(err, REDELIVER_FLAGS, body);
          });
        ctx.out.result(r, () => {
          ctx.out.line(
            r.redelivered
              ? `${r.redelivered === 1 ? '1 delivery is' : `${r.redelivered} deliveries are`} pending again (${r.deliveryIds.join(', ')}): a worker sends ${r.redelivered === 1 ? 'it' : 'them'} within seconds.`
              : 'No failed delivery to send again.',
          );
          if (r.more) ctx.out.line(`More are failed: run the same command again for the next ones.`);
        });
        return EXIT.ok;
      }),
    );
}
