// How `watch` shows an operation: live bars on a terminal (one per wave, plus a status line with
// the state, the bake countdown and the halt reason), one plain line per event in a log, or one
// JSON object per event with --json.
import cliProgress from 'cli-progress';
import { escapeText, showText } from '../lib/text.ts';
import { haltReasonText } from './output.ts';

export interface WaveProgress {
  wave: number;
  items: number;
  done: number;
  failed: number;
  pending: number;
  restored?: number;
  restoreFailed?: number;
  /** Being restored by a running rollback (its restore out, or to be retried). */
  restoring?: number;
  skipped?: number;
  /** Descendants the wave's cascades take, not counted in items (the stream's `descendants`). */
  descendants?: number;
}

/** " (+6 by cascade)": what a wave takes beyond its submitted items, which its counts are of. */
export const byCascade = (w: Pick<WaveProgress, 'descendants'>) =>
  w.descendants ? ` (+${w.descendants} by cascade)` : '';

export interface OpStatus {
  state: string;
  currentWave: number | null;
  waveCount?: number | null;
  haltReason: string | null;
  bakeUntil: string | null;
  /** Why a running operation does not move (the server's `throttled` / `waiting`), if it says. */
  held?: string | null;
  /** Server time minus local time (ms), so a countdown is right on a skewed clock. */
  skewMs: number;
}

export interface View {
  frame(event: string, id: string | undefined, data: Record<string, unknown>, status: OpStatus): void;
  waves(waves: WaveProgress[], status: OpStatus): void;
  note(text: string): void;
  close(): void;
}

export function bakeLeft(status: OpStatus, now = Date.now()): number | null {
  if (!status.bakeUntil || status.state !== 'baking') return null;
  return Math.max(0, Math.ceil((Date.parse(status.bakeUntil) - (now + status.skewMs)) / 1000));
}

const waveText = (wave: number | null | undefined, count: number | null | undefined) =>
  typeof wave !== 'number' ? '' : ` · wave ${wave + 1}${count ? `/${count}` : ''}`;

/**
 * What the operation shows now beyond its state and wave: the bake's countdown, the halt reason,
 * and (`held`: not beside a transition) why it does not move. A transition line is an event of the
 * past, replayed on connecting: the wait read now beside it said "waiting to retry 7 failed
 * restores" on the rollback_started of a rollback that had not met a failure yet (a trial).
 */
function nowText(s: OpStatus, held = true): string {
  const left = bakeLeft(s);
  const bake = left === null ? '' : ` · bake ${left}s left`;
  const halt = s.haltReason ? ` · ${haltReasonText(s.state, s.haltReason, 'halt')}` : '';
  return `${bake}${halt}${held && s.held ? ` · ${s.held}` : ''}`;
}

function statusText(s: OpStatus): string {
  return `${s.state}${waveText(s.currentWave, s.waveCount)}${nowText(s)}`;
}

export function jsonView(write: (s: string) => void): View {
  return {
    frame: (event, id, data) => write(JSON.stringify({ event, id: id ?? null, data }) + '\n'),
    waves: () => undefined,
    note: () => undefined,
    close: () => undefined,
  };
}

interface ProbeResultRow {
  tenantId: string;
  /** A cascade's descendants' type, when its adapter was asked (not the operation's own). */
  type?: string;
  result: string;
  detail?: string;
}

/** Tenants not healthy named on a probe line, with what they said (cut: a downstream writes it). */
const PROBE_NAMED = 3;
const PROBE_DETAIL_CHARS = 80;

/** "2 healthy, 1 unhealthy · tn_b unhealthy (HTTP 503)": the tally, then who is not healthy. */
export function probeText(results: ProbeResultRow[]): string {
  const by = new Map<string, number>();
  for (const r of results) by.set(r.result, (by.get(r.result) ?? 0) + 1);
  const tally = [...by].map(([k, n]) => `${n} ${k}`).join(', ');
  const sick = results.filter((r) => r.result !== 'healthy' && r.result !== 'not_configured');
  if (!sick.length) return tally;
  const named = sick.slice(0, PROBE_NAMED).map((r) => {
    const detail = r.detail ? escapeText(r.detail) : '';
    const cut = detail.length > PROBE_DETAIL_CHARS ? `${detail.slice(0, PROBE_DETAIL_CHARS)}…` : detail;
    const via = r.type ? ` via ${showText(r.type)}` : '';
    return `${showText(r.tenantId)}${via} ${r.result}${cut ? ` (${cut})` : ''}`;
  });
  const more = sick.length > named.length ? ` and ${sick.length - named.length} more` : '';
  return `${tally} · ${named.join(', ')}${more}`;
}

/**
 * A probe round's line, or null when it reads as the last one shown for its wave: a round comes
 * every 5 s of a bake, and an hour's bake printed 720 alike lines.
 */
function probeLine(data: Record<string, unknown>, shown: Map<number, string>): string | null {
  const d = data as { wave?: number; results?: ProbeResultRow[] };
  const wave = d.wave ?? 0;
  const line = `probes wave ${wave + 1}: ${probeText(d.results ?? [])}`;
  if (shown.get(wave) === line) return null;
  shown.set(wave, line);
  return line;
}

export function lineView(write: (s: string) => void): View {
  const probesShown = new Map<number, string>();
  // A progress line like the last one says nothing new: during an outage every reconnect's
  // snapshot printed the same line again (a new-user trial).
  let lastProgress: string | undefined;
  return {
    frame(event, _id, data, status) {
      if (event === 'transition') {
        const d = data as {
          action?: string;
          actor?: string;
          wave?: number | null;
          at?: string;
          to?: string | null;
          outcome?: string;
        };
        // The event's own move and wave: a history replayed on connecting to an ended operation
        // used to show every event leading to the state it is in now, and its current wave beside
        // the event's ("wave 1/4 wave=2"). What the operation shows now (bake, halt reason) goes
        // only with an event that brought it where it is.
        const current = d.to === status.state && (typeof d.wave !== 'number' || d.wave === status.currentWave);
        const to = typeof d.to !== 'string' ? '' : ` → ${d.to}${waveText(d.wave, status.waveCount)}`;
        // A refused command is in the audit log too: "POST …/approve by requester-1" read as an approval.
        const refused = d.outcome === 'refused' ? ' (refused)' : '';
        write(
          `${d.at ?? ''} ${d.action} by ${d.actor ?? '?'}${refused}${to}${current && to ? nowText(status, false) : ''}\n`,
        );
      } else if (event === 'probes') {
        const line = probeLine(data, probesShown);
        if (line) write(line + '\n');
      } else if (event === 'snapshot') write(`watching: ${statusText(status)}\n`);
      else if (event === 'end') write(`end: ${status.state}\n`);
    },
    waves(waves, status) {
      // A rejected plan (or one ended before it had any) has no waves: "progress rejected · " said nothing.
      if (!waves.length) return;
      // What a rollback has brought back so far: during one, done/items stays where the run left it,
      // so the line said "w2 195/195" twenty times while the restores landed (a new-user trial).
      const back = (w: WaveProgress) =>
        (w.restoring ? ` · restoring ${w.restoring}` : '') +
        (w.restored ? ` · restored ${w.restored}` : '') +
        (w.restoreFailed ? ` (${w.restoreFailed} restore failed)` : '');
      const parts = waves.map(
        (w) => `w${w.wave + 1} ${w.done}/${w.items}${byCascade(w)}${w.failed ? ` (${w.failed} failed)` : ''}${back(w)}`,
      );
      const line = `progress ${statusText(status)} · ${parts.join(' · ')}\n`;
      if (line !== lastProgress) write(line);
      lastProgress = line;
    },
    note: (text) => write(text + '\n'),
    close: () => undefined,
  };
}

/** Live bars (cli-progress) on a terminal; the status line ticks every second for the countdown. */
export function barView(stream: NodeJS.WriteStream): View {
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: ' wave {wave} [{bar}] {value}/{total}{cascade} · failed {failed} · restored {restored}',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      forceRedraw: true,
      barsize: 30,
    },
    cliProgress.Presets.shades_classic,
  );
  let last: OpStatus | undefined;
  const probesShown = new Map<number, string>();
  const head = multi.create(1, 0, { text: '' }, { format: ' {text}' });
  const bars = new Map<number, cliProgress.SingleBar>();
  const tick = setInterval(() => last && head.update(0, { text: statusText(last) }), 1000);
  tick.unref();
  return {
    frame(event, _id, data, status) {
      last = status;
      // Bars show counts only: who answers a bake's probes, and how, goes above them as a log line.
      const probes = event === 'probes' ? probeLine(data, probesShown) : null;
      if (probes) multi.log(probes + '\n');
      head.update(0, { text: statusText(status) });
    },
    waves(waves, status) {
      last = status;
      head.update(0, { text: statusText(status) });
      for (const w of waves) {
        const payload = { wave: w.wave + 1, failed: w.failed, restored: w.restored ?? 0, cascade: byCascade(w) };
        let bar = bars.get(w.wave);
        if (!bar) {
          bar = multi.create(Math.max(w.items, 1), 0, payload);
          bars.set(w.wave, bar);
        }
        bar.setTotal(Math.max(w.items, 1));
        bar.update(w.done + w.failed, payload);
      }
    },
    note: (text) => multi.log(text + '\n'),
    close() {
      clearInterval(tick);
      if (last) head.update(0, { text: statusText(last) });
      // Lines logged since the last redraw wait in cli-progress's buffer, and stop() does not
      // write them: a note or probe line that came with the last frame was lost. Redraw first.
      multi.update();
      multi.stop();
    },
  };
}
