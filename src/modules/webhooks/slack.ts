// The Slack incoming-webhook form of an event (`format: "slack"`): `{ text, blocks }`. Slack shows
// `text` in notifications and the blocks in the channel; both say what happened to which operation.
import type { WebhookEvent } from './events.ts';

const ICON: Record<string, string> = {
  planned: ':memo:',
  rejected: ':no_entry:',
  approved: ':white_check_mark:',
  started: ':arrow_forward:',
  wave_completed: ':ocean:',
  halted: ':octagonal_sign:',
  rolled_back: ':rewind:',
  rollback_incomplete: ':warning:',
  cancelled: ':x:',
  expired: ':hourglass:',
  completed: ':checkered_flag:',
  on: ':ice_cube:',
  off: ':sunny:',
};

// Slack's mrkdwn treats these three as markup: escaped, a reason cannot forge a link or mention.
const esc = (v: unknown) =>
  (typeof v === 'string' ? v : v === null || v === undefined ? '' : JSON.stringify(v))
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;');

export function slackMessage(body: WebhookEvent['body']): { text: string; blocks: unknown[] } {
  const d = body.data;
  const [prefix, suffix] = body.type.split('.') as [string, string];
  const icon = ICON[suffix] ?? ':bell:';
  let text: string;
  if (prefix === 'freeze') {
    text = `${icon} Global freeze ${d.frozen ? 'set' : 'lifted'} by ${esc(d.actor)}${d.reason ? `: ${esc(d.reason)}` : ''}`;
  } else {
    const what = prefix === 'operation' ? 'Operation' : prefix === 'restore' ? 'Restore' : 'Purge';
    // "wave 2 completed": the wave's number replaces the event's own "wave" (it read "wave 2 wave completed").
    // A wave that bakes next is not yet judged healthy: its probes may halt it, and "completed"
    // followed by "halted" for the same wave read as a contradiction in a channel (a trial).
    const event =
      typeof d.wave === 'number' && suffix === 'wave_completed'
        ? d.state === 'baking'
          ? `wave ${d.wave + 1} done, baking (its health probes decide before the next wave)`
          : `wave ${d.wave + 1} completed`
        : suffix.replace('_', ' ');
    text =
      `${icon} ${what} ${esc(d.operationId)} ${event}` +
      ` (${esc(d.kind)} ${esc(d.targetType)}: ${esc(d.itemCount)} items, ${esc(d.tenantCount)} tenants)`;
    if (d.haltReason) text += `: ${esc(d.haltReason)}`;
  }
  const context = [`*${body.type}*`, `by ${esc(d.actor)}`, body.timestamp];
  if (d.ticket) context.push(`ticket ${esc(d.ticket)}`);
  return {
    text,
    blocks: [
      { type: 'section', text: { type: 'mrkdwn', text } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: context.join(' · ') }] },
    ],
  };
}
