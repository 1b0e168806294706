// Blastgate live view: the operations list and one operation followed live. Plain DOM, no
// framework; every value from the API is put on the page as text (textContent), never as HTML.
// The token is kept in this tab's sessionStorage only and sent as `Authorization: Bearer`; the
// event stream is read with fetch() (EventSource cannot send that header) and resumed with
// Last-Event-ID after a drop, so a reconnect misses nothing.
const TOKEN_KEY = 'blastgate.token';
// prettier-ignore
const STATES = [
  'planned', 'approved', 'running', 'baking', 'paused', 'halted', 'rolling_back', 'completed',
  'completed_with_failures', 'rolled_back', 'rollback_incomplete', 'rejected', 'cancelled', 'failed', 'expired',
];
// Terminal or ended: listed after the operations that may still change.
const ENDED = ['completed', 'completed_with_failures', 'rolled_back', 'rollback_incomplete'];
const FINISHED = [...ENDED, 'rejected', 'cancelled', 'failed', 'expired'];
const STOPPABLE = ['running', 'baking', 'paused', 'halted'];
// Which buttons a role sees, and in which states; the server decides in the end (its refusal is shown).
const ACTIONS = [
  { path: 'approve', label: 'Approve…', role: 'approver', when: (op) => op.state === 'planned' },
  // An approved operation waited for a start the page could not give (a trial): the flow ended in curl.
  { path: 'start', label: 'Start…', role: 'operator', when: (op) => op.state === 'approved' },
  { path: 'pause', label: 'Pause…', role: 'operator', when: (op) => ['running', 'baking'].includes(op.state) },
  { path: 'resume', label: 'Resume…', role: 'operator', when: (op) => ['paused', 'halted'].includes(op.state) },
  {
    path: 'abort',
    label: 'Abort…',
    role: 'operator',
    // A delete halted to wait for a human (onHalt: pause) is stopped already: its ways out are
    // Roll back and Resume (the server refuses an abort there, saying so).
    when: (op) =>
      ['planned', 'approved', ...STOPPABLE].includes(op.state) &&
      !(op.state === 'halted' && op.kind === 'delete' && op.haltPolicy?.onHalt !== 'rollback'),
  },
  // A plain abort never ends a rollback (a second click would): ending one is its own button.
  {
    path: 'abort',
    key: 'end-rollback',
    label: 'End rollback…',
    role: 'operator',
    when: (op) => op.state === 'rolling_back',
    extra: { endRollback: true },
  },
  // A rollback that ended incomplete can be tried again (restores that failed for a reason that
  // may have passed get their attempts back), so it is offered there too; rolled_back is final.
  {
    path: 'rollback',
    label: 'Roll back…',
    role: 'operator',
    when: (op) =>
      op.kind === 'delete' &&
      [...STOPPABLE, 'completed', 'completed_with_failures', 'rollback_incomplete'].includes(op.state),
  },
];
// The reason line says what the reason is about: the operation keeps one `haltReason` for a
// pause, a halt, a rollback, an end with failures or a cancellation alike.
const REASON_LABELS = {
  paused: 'Paused',
  halted: 'Halted',
  rolling_back: 'Rolling back',
  rolled_back: 'Rolled back',
  rollback_incomplete: 'Rollback incomplete',
  completed_with_failures: 'Completed with failures',
  cancelled: 'Cancelled',
  expired: 'Expired',
};
// Never started: rejected, or cancelled or expired before its start (currentWave is null until the
// start). No wave ran and no probe round will come: "No probe round yet" under a rejected plan read
// as if it would still run (a trial).
const NEVER_RUN = ['rejected', 'cancelled', 'expired', 'failed'];
const neverRan = (op) => NEVER_RUN.includes(op.state) && (op.currentWave === null || op.currentWave === undefined);
// How soon a read that met an outage (a 503, no answer) is tried again: a page loaded during one,
// an open page's event stream, alike.
const RETRY_MS = 2000;

const $ = (id) => document.getElementById(id);
const token = () => sessionStorage.getItem(TOKEN_KEY);
const el = (tag, text, cls) => {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
};
const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

class ApiError extends Error {
  constructor(status, body) {
    super(`${status} ${body?.code ?? 'ERROR'}: ${body?.message ?? 'the request failed'}`);
    this.status = status;
    this.code = body?.code;
    this.serverMessage = body?.message ?? '';
    this.dependency = body?.details?.dependency;
  }
}

/** No answer at all (the server down, the connection refused or cut): fetch's TypeError, said as such. */
class NetworkError extends Error {
  constructor(cause) {
    super(`no answer from the service (${cause?.message ?? cause})`);
  }
}

async function api(path, opts = {}) {
  const headers = { authorization: `Bearer ${token()}`, accept: 'application/json' };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const init = { method: opts.method ?? 'GET', headers, cache: 'no-store' };
  if (opts.body !== undefined) init.body = JSON.stringify(opts.body);
  const res = await fetch(path, init).catch((err) => {
    throw new NetworkError(err);
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

function showError(err) {
  $('error').hidden = !err;
  $('error').textContent = err ? (err.message ?? String(err)) : '';
  if (err?.status === 401) forget();
}

const DEPENDENCIES = { postgres: 'PostgreSQL', redis: 'Redis' };
/**
 * What an outage looks like from here, said for people, or null for any other failure: the service
 * answers 503 (PostgreSQL or Redis away; 502 or 504 from a proxy in front of it), or does not answer.
 * Such a read is tried again, and what the page shows meanwhile is old.
 */
function outageOf(err) {
  if (err instanceof NetworkError) return 'the service does not answer (network error)';
  if (!(err instanceof ApiError) || ![502, 503, 504].includes(err.status)) return null;
  const dep = DEPENDENCIES[err.dependency] ?? /^(PostgreSQL|Redis)\b/.exec(err.serverMessage)?.[1];
  return `the service answers ${err.status} (${dep ? `${dep} unavailable` : (err.code ?? 'unavailable')})`;
}

// A page open when PostgreSQL went away kept showing its old state with no sign that it was old (a
// trial). freshAt: when what the page shows was last known current (an answer, a frame or a heartbeat
// of a stream that reads the operation); a refresh or a stream that meets an outage says since when.
let freshAt = null;
const hms = (d) => [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');

function fresh() {
  freshAt = new Date();
  if ($('stale').hidden) return; // called for every chunk of the stream: no DOM work when nothing changes
  $('stale').hidden = true;
  $('stale').textContent = '';
}

function stale(cause, since = freshAt) {
  $('stale').textContent = `${since ? `Not updated since ${hms(since)}` : 'Not updated'}: ${cause}; retrying`;
  $('stale').hidden = false;
}

/** A refresh of what the page shows failed: an outage makes it stale (and is retried); anything else is an error. */
function refreshFailed(err) {
  const cause = outageOf(err);
  if (cause && freshAt) stale(cause);
  else showError(err);
}

let me = null;
let view = null; // the operation being shown: { id, op, waves, probes, timeline, cursor, ctrl, offset, ended }
let listTimer = null;

function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  stopViews();
  for (const id of ['list', 'op', 'forget']) $(id).hidden = true;
  $('whoami').textContent = '';
  $('login').hidden = false;
}

async function start() {
  if (!token()) return forget();
  $('login').hidden = true;
  try {
    me = await api('/v1/auth/whoami');
  } catch (err) {
    showError(err);
    // PostgreSQL or Redis away (503): asked again until it answers, and the page goes on from there.
    // A page loaded during an outage stayed on the error (trial N): the retry of showOp was never reached.
    if (err?.status === 503) setTimeout(() => token() && !me && start(), RETRY_MS);
    return;
  }
  $('whoami').textContent = `${me.name} (${me.role})`;
  $('forget').hidden = false;
  route();
}

function route() {
  if (!me) return;
  showError(null);
  const m = /^#\/op\/(.+)$/.exec(location.hash);
  void (m ? showOp(decodeURIComponent(m[1])) : showList());
}

function stopViews() {
  clearInterval(listTimer);
  // What the next view shows is its own: nothing of it is old yet.
  freshAt = null;
  $('stale').hidden = true;
  if (view) {
    view.ctrl.abort();
    clearInterval(view.tick);
  }
  view = null;
}

// ---- operations list -------------------------------------------------------------------------
async function showList() {
  stopViews();
  $('op').hidden = true;
  $('list').hidden = false;
  listTimer = setInterval(() => void loadList().catch(refreshFailed), 5000);
  await loadList().catch(refreshFailed);
}

async function loadList() {
  const picked = [...document.querySelectorAll('#filters input:checked')].map((i) => i.value);
  // One request per ticked state: a single `state` is what every version of the list route takes.
  const pages = await Promise.all(
    (picked.length ? picked : [null]).map((s) =>
      api(`/v1/operations?limit=100${s ? `&state=${encodeURIComponent(s)}` : ''}`),
    ),
  );
  // An answer: what the list shows is current, and an error of an earlier load (a list loaded during an
  // outage) is over.
  fresh();
  showError(null);
  const ops = new Map(pages.flatMap((p) => p.items).map((o) => [o.id, o]));
  const rank = (o) => (FINISHED.includes(o.state) ? 1 : 0);
  const sorted = [...ops.values()].sort((a, b) => rank(a) - rank(b) || String(b.createdAt).localeCompare(a.createdAt));
  $('ops').replaceChildren(
    ...sorted.map((o) => {
      const tr = el('tr');
      tr.dataset.id = o.id;
      tr.dataset.state = o.state;
      const link = el('a', o.id);
      link.href = `#/op/${encodeURIComponent(o.id)}`;
      const r = o.rejectionSummary;
      const items = r ? listedRejection(r) : o.itemCount;
      const cells = [o.state, o.kind ?? o.action, o.targetType, items, r ? '–' : o.tenantCount, when(o.createdAt)];
      tr.append(el('td'), ...cells.map((c) => el('td', c)));
      tr.firstChild.append(link);
      tr.children[1].className = `state state-${o.state}`;
      return tr;
    }),
  );
  $('ops-empty').hidden = sorted.length > 0;
}

/**
 * A rejected plan in the list: what was submitted and why it was rejected ("3 submitted · rejected
 * (2 type_mismatch)"). It read "0 items" (a trial): nothing was planned, so the plan has none.
 */
function listedRejection(r) {
  const why = Object.entries(r.counts ?? {}).map(([c, n]) => `${n} ${c}`);
  return `${r.submitted} submitted · rejected${why.length ? ` (${why.join(', ')})` : ''}`;
}

/** "1 tenant", "2 tenants" ("1 tenants, 1 waves" in the approve dialog: trial M). */
const count = (n, noun) => `${n} ${noun}${n === 1 ? '' : 's'}`;
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '');

// ---- one operation ---------------------------------------------------------------------------
async function showOp(id) {
  stopViews();
  $('list').hidden = true;
  $('op').hidden = false;
  const v = { id, op: null, waves: [], probes: null, timeline: new Map(), cursor: null, offset: 0, ended: false };
  v.ctrl = new AbortController();
  view = v;
  $('op-id').textContent = id;
  for (const c of ['waves', 'timeline', 'actions']) $(c).replaceChildren();
  try {
    const [op, audit] = await Promise.all([api(`/v1/operations/${encodeURIComponent(id)}`), loadAudit(id)]);
    if (view !== v) return;
    applyOperation(v, op);
    for (const a of audit) addEntry(v, { ...a, from: a.payload.from, to: a.payload.to, detail: a.payload });
    // The stream resumes after the last audit event read here: nothing twice, nothing missed.
    v.cursor = audit.length ? audit[audit.length - 1].seq : null;
  } catch (err) {
    showError(err);
    // PostgreSQL or Redis away (503): tried again until it answers, as an open page's stream rides
    // the outage out. A page opened during one stayed on the error until reloaded by hand (trial M).
    if (err?.status === 503) setTimeout(() => view === v && showOp(id), RETRY_MS);
    return;
  }
  showError(null);
  fresh();
  render(v);
  v.tick = setInterval(() => renderBake(v), 1000);
  void follow(v);
}

async function loadAudit(id) {
  const events = [];
  let after = null;
  for (let page = 0; page < 50; page++) {
    const q = `operationId=${encodeURIComponent(id)}&limit=1000${after === null ? '' : `&after=${after}`}`;
    const r = await api(`/v1/audit?${q}`);
    events.push(...r.items);
    if (r.nextAfter === null) break;
    after = r.nextAfter;
  }
  return events;
}

/** GET /v1/operations/{id} (or a command's answer): its per-wave ledger counts become the strip. */
function applyOperation(v, op) {
  v.op = { ...v.op, ...op, waveCount: op.plan?.waves?.length ?? v.op?.waveCount ?? 0 };
  const counts = new Map((op.waveProgress ?? []).map((w) => [w.wave, w.counts]));
  v.waves = (op.plan?.waves ?? []).map((w) => {
    const c = counts.get(w.index) ?? {};
    return {
      wave: w.index,
      items: w.items,
      // Counted as the stream's waves are once shown (shownWave): each item once, in its ledger state.
      done: c.done ?? 0,
      failed: c.failed ?? 0,
      restoring: c.restoring ?? 0,
      restored: c.restored ?? 0,
      restoreFailed: c.restore_failed ?? 0,
    };
  });
}

// Reads the stream until it ends; reconnects with the last cursor after a drop (bounded backoff).
async function follow(v) {
  let delay = 500;
  v.ended = false;
  while (!v.ctrl.signal.aborted) {
    setStream('connecting');
    let outage = null;
    try {
      const headers = { authorization: `Bearer ${token()}`, accept: 'text/event-stream' };
      if (v.cursor !== null) headers['last-event-id'] = String(v.cursor);
      const url = `/v1/operations/${encodeURIComponent(v.id)}/events`;
      const res = await fetch(url, { headers, signal: v.ctrl.signal, cache: 'no-store' }).catch((err) => {
        throw v.ctrl.signal.aborted ? err : new NetworkError(err);
      });
      if (!res.ok) {
        const err = new ApiError(res.status, await res.json().catch(() => null));
        if (res.status !== 429 && res.status < 500) return (setStream('stopped'), showError(err));
        throw err;
      }
      // Connected: the server read the operation, so whatever an earlier stream said about the
      // database being away is over (the frames that follow bring the state now).
      v.away = false;
      setStream('live');
      delay = 500;
      const alive = () => view === v && !v.away && fresh();
      if (await readFrames(res.body, (f) => onFrame(v, f), alive)) {
        v.ended = true;
        setStream('ended');
        return void watchEnded(v);
      }
    } catch (err) {
      if (v.ctrl.signal.aborted) return;
      // A reconnect that meets an outage: what the page shows is old until one gets through, tried
      // every RETRY_MS as a page loaded during an outage is. (A stream that merely dropped is not
      // news: its reconnect says.)
      outage = outageOf(err);
      if (outage && view === v) stale(outage);
      setStream(`reconnecting (${err.message ?? err})`);
    }
    await sleep(outage ? RETRY_MS : delay, v.ctrl.signal);
    if (!outage) delay = Math.min(delay * 2, 10_000);
  }
}

// An operation that ended may still be rolled back (completed, completed_with_failures,
// rollback_incomplete): its stream ends there, and a rollback started elsewhere (the API, the CLI,
// another tab) was never shown: the page said completed while the operation rolled back (a trial).
// Its state is read every few seconds; once it changes, the stream is followed again from its cursor.
const REOPENABLE = ['completed', 'completed_with_failures', 'rollback_incomplete'];
const ENDED_POLL_MS = 5_000;
async function watchEnded(v) {
  const from = v.op?.state;
  if (!REOPENABLE.includes(from)) return;
  setStream(`ended (checked every ${ENDED_POLL_MS / 1000} s for a rollback)`);
  while (view === v && v.ended && !v.ctrl.signal.aborted) {
    await sleep(ENDED_POLL_MS, v.ctrl.signal);
    if (view !== v || !v.ended || v.ctrl.signal.aborted) return;
    const op = await api(`/v1/operations/${encodeURIComponent(v.id)}`).catch((err) => {
      const cause = outageOf(err);
      if (cause && view === v) stale(cause);
      return null;
    });
    if (view !== v || !v.ended) return;
    if (op) fresh();
    if (op && op.state !== from) {
      applyOperation(v, op);
      render(v);
      return void follow(v);
    }
  }
}

/**
 * SSE framing: `field: value` lines, a blank line ends a frame, `:` lines are comments. True after
 * `end`. `onData` is called for every chunk read, heartbeats included: the server is there.
 */
async function readFrames(body, onFrame, onData = () => undefined) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let frame = { event: 'message', id: null, data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    onData();
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (frame.data.length) onFrame({ ...frame, data: JSON.parse(frame.data.join('\n')) });
        if (frame.event === 'end') return (await reader.cancel().catch(() => undefined), true);
        frame = { event: 'message', id: null, data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'data') frame.data.push(val);
      else if (field === 'event') frame.event = val;
      else if (field === 'id') frame.id = val;
    }
  }
}

function onFrame(v, { event, id, data }) {
  if (view !== v) return;
  if (data.serverTime) v.offset = Date.parse(data.serverTime) - Date.now();
  if (event === 'snapshot') {
    v.op = { ...v.op, ...data.operation };
    mergeWaves(v, data.waves);
    v.probes = data.probes ?? v.probes;
  } else if (event === 'transition') {
    // History, not the present: a stream that catches up (a first connection, a resume far behind)
    // replays every transition, each with the state the operation entered then. What the operation
    // is now comes from snapshot, progress and end frames only; a change of state, halt reason or
    // bake sends a progress frame (the server's progressKey), so nothing live is missed.
    addEntry(v, data);
  } else if (event === 'progress') {
    const { state, currentWave, bakeUntil, haltReason, throttled, waiting, refused, waves } = data;
    v.op = { ...v.op, state, currentWave, bakeUntil, haltReason, throttled, waiting, refused };
    mergeWaves(v, waves);
  } else if (event === 'probes') v.probes = data;
  else if (event === 'unavailable') {
    // The stream stays open and beats while PostgreSQL is away: its heartbeats are no news.
    v.away = true;
    setStream(`the server cannot read the operation since ${data.since} (database away)`);
    // What the page shows is as of then (the chunk this frame came in is no news either).
    const since = Date.parse(data.since);
    if (!Number.isNaN(since)) freshAt = new Date(since);
    stale('the service cannot read the operation (PostgreSQL unavailable)');
  } else if (event === 'available') {
    v.away = false;
    fresh();
    setStream('live');
  } else if (event === 'end') v.op = { ...v.op, state: data.state };
  if (id !== null && /^\d+$/.test(id)) v.cursor = Number(id);
  render(v);
}

/** Stream wave counts replace the ones shown, wave by wave (a wave the stream does not list keeps its row). */
function mergeWaves(v, waves) {
  const byWave = new Map(v.waves.map((w) => [w.wave, w]));
  for (const w of waves ?? []) byWave.set(w.wave, shownWave(w));
  v.waves = [...byWave.values()].sort((a, b) => a.wave - b.wave);
}

/**
 * A stream wave as the strip shows it: each item once, as it is now. The stream's `done` and
 * `failed` are what the run did (the wave's counters, which a rollback leaves alone); `restored`
 * and `restoreFailed` are what a rollback did to those items since. A restored item is back, so it
 * is shown restored, not also done; an item whose restore failed is shown as that (still deleted,
 * it needs a human), not as a plain delete. The counters do not say which of done or failed an
 * undone item had been counted in (a rollback also restores items whose failed call may have gone
 * through), so the undone are taken from done first, the common case: the counts per item may then
 * be off between done and failed while a rollback runs, but their sum is what the run reached,
 * never more than the wave's items.
 */
function shownWave(w) {
  // What a rollback took up (restoring, restored, restore failed) is no longer shown as the forward
  // run's done or failed: each item once. An item whose delete had no known outcome (its call out at
  // a halt) is neither, and was drawn nowhere while it was being restored (trial M).
  const undone = (w.restored ?? 0) + (w.restoreFailed ?? 0) + (w.restoring ?? 0);
  const done = w.done ?? 0;
  return {
    ...w,
    done: Math.max(0, done - undone),
    failed: Math.max(0, (w.failed ?? 0) - Math.max(0, undone - done)),
    restoring: w.restoring ?? 0,
    restored: w.restored ?? 0,
    restoreFailed: w.restoreFailed ?? 0,
  };
}

function addEntry(v, e) {
  v.timeline.set(e.seq, e);
}

// ---- rendering -------------------------------------------------------------------------------
function setStream(s) {
  $('stream').dataset.stream = s.split(' ')[0];
  $('stream').textContent = `· updates: ${s}`;
}

/** Why it does not move, for people: a rollback waiting out its restores' backoff says how many, when and why. */
// What `waiting.on` names ("Waiting for redis since 2026-…Z" read as a code word: a trial).
const WAITED_FOR = { redis: 'the work queue (Redis)', workers: 'a worker process' };
function waitingText(w) {
  if (w.on === 'claims')
    return `Waiting for ${w.items} item(s) another run holds (until ${when(w.until)} at most). ${w.detail}`;
  if (w.on === 'bake_end') return `Waiting for the step after the bake that ended at ${when(w.since)}: ${w.detail}`;
  if (w.on === 'progress') return `No item outcome since ${when(w.since)}. ${w.detail}`;
  if (w.on !== 'restore_retry') return `Waiting for ${WAITED_FOR[w.on] ?? w.on} since ${when(w.since)}: ${w.detail}`;
  const n = w.items ?? 0;
  const error = w.lastError ? ` Last error: ${w.lastError}.` : '';
  // Due already: "the next at" a past time read as a clock gone wrong (trial L).
  const next =
    Date.parse(w.nextRetryAt) <= Date.now()
      ? `retrying since ${when(w.nextRetryAt)} (due then, none answered yet)`
      : `the next at ${when(w.nextRetryAt)}`;
  return `Waiting to retry ${n} failed restore${n === 1 ? '' : 's'}, ${next}.${error} ${w.detail}`;
}

/**
 * Why a rejected plan was rejected, from its recorded report: it showed as "delete of 0 app items
 * across 0 tenants · 0 waves" with no reason (trial M). The first offenders, and where every one is.
 */
function rejectionText(op) {
  const r = op.state === 'rejected' ? op.rejection : null;
  if (!r?.counts) return null;
  const counts = Object.entries(r.counts);
  const submitted = counts.reduce((n, [, k]) => n + k, 0);
  const bad = counts.filter(([c, k]) => c !== 'ok' && k > 0);
  const first = bad
    .flatMap(([c]) =>
      (r.offenders?.[c] ?? []).slice(0, 3).map((o) => `${o.id} (${c}${o.actualType ? `: is ${o.actualType}` : ''})`),
    )
    .slice(0, 5);
  const report = op.links?.report ?? `/v1/operations/${op.id}/report`;
  return {
    submitted,
    text:
      `Rejected: ${bad.map(([c, k]) => `${k} ${c}`).join(', ')} of ${submitted}; nothing runs from it. ` +
      `${first.length ? `E.g. ${first.join(', ')}. ` : ''}Every offending ID: GET ${report} (blastgate report ${op.id}).`,
  };
}

/**
 * "120 items: 60 app, 60 module by cascade": itemCount counts cascaded descendants too, so "120
 * app items" over 60 apps (a trial) read as twice the apps.
 */
function itemsText(op) {
  const cascade = op.plan?.cascade ?? [];
  const taken = cascade.reduce((n, c) => n + c.count, 0);
  if (!taken) return `${op.itemCount} ${op.targetType} items`;
  const parts = cascade.map((c) => `${c.count} ${c.type}`).join(', ');
  return `${op.itemCount} items: ${op.itemCount - taken} ${op.targetType}, ${parts} by cascade`;
}

function render(v) {
  const op = v.op;
  $('op-state').textContent = op.state;
  $('op-state').className = `state state-${op.state}`;
  const waves =
    op.currentWave === null || op.currentWave === undefined
      ? `${op.waveCount} waves`
      : `wave ${op.currentWave + 1} of ${op.waveCount}`;
  const rejected = rejectionText(op);
  $('op-summary').textContent = rejected
    ? `${op.kind ?? op.action} of ${rejected.submitted} submitted ${op.targetType} ID${rejected.submitted === 1 ? '' : 's'}: nothing planned · requested by ${op.requestedBy}`
    : `${op.kind ?? op.action} of ${itemsText(op)} across ${count(op.tenantCount, 'tenant')} · ` +
      `${waves} · requested by ${op.requestedBy}`;
  $('halt').hidden = !op.haltReason && !rejected;
  $('halt').textContent = rejected
    ? rejected.text
    : op.haltReason
      ? `${REASON_LABELS[op.state] ?? 'Reason'}: ${op.haltReason}`
      : '';
  // Running with nothing moving needs its reason shown, as the halt's is.
  const held = op.waiting
    ? waitingText(op.waiting)
    : op.throttled
      ? `Held back by ${op.throttled.cap} until ${op.throttled.until}`
      : op.refused
        ? `${op.refused.command} refused ${op.refused.code} (${op.refused.by}, ${op.refused.at}): ${op.refused.message}`
        : '';
  $('held').hidden = !held;
  $('held').textContent = held;
  renderBake(v);
  // A plan that never ran has no probe round to wait for, and a rejected one no waves either.
  const never = neverRan(op);
  $('waves-panel').hidden = never && !v.waves.length;
  $('waves').replaceChildren(...v.waves.map(renderWave));
  $('probes-panel').hidden = never;
  renderProbes(v.probes);
  renderActions(v);
  const entries = [...v.timeline.values()].sort((a, b) => b.seq - a.seq);
  $('timeline').replaceChildren(...entries.map(renderEntry));
}

const SEGMENTS = [
  ['done', 'done'],
  ['failed', 'failed'],
  ['restoring', 'restoring'],
  ['restored', 'restored'],
  ['restoreFailed', 'restore-failed'],
];

function renderWave(w) {
  const li = el('li');
  const n = (k) => w[k] ?? 0;
  for (const k of ['wave', 'items', 'done', 'failed', 'restoring', 'restored', 'restoreFailed'])
    li.dataset[k] = String(n(k));
  const bar = el('div', null, 'bar');
  // Each item is counted once (shownWave), so the segments fit. The cap is for the operation view's
  // ledger counts, which also count cascaded descendants where the plan's items per wave do not:
  // a wave's segments never draw more than its bar.
  let left = n('items');
  for (const [k, cls] of SEGMENTS) {
    const shown = Math.min(n(k), left);
    left -= shown;
    const seg = el('span', null, `seg ${cls}`);
    seg.style.width = `${w.items ? (100 * shown) / w.items : 0}%`;
    bar.append(seg);
  }
  const restoring = n('restoring') ? ` · ${n('restoring')} restoring` : '';
  // Restored only where a rollback may restore: a purge's or a restore's waves said "0 restored" (trial M).
  const undoable = (view?.op?.kind ?? view?.op?.action ?? 'delete') === 'delete';
  const restored = undoable || n('restored') ? ` · ${n('restored')} restored` : '';
  const text = `Wave ${n('wave') + 1}: ${n('done')} done · ${n('failed')} failed${restoring}${restored}`;
  const label = el('span', text, 'wave-label');
  if (n('restoreFailed')) label.append(' · ', el('span', `${n('restoreFailed')} restore failed`, 'restore-failed'));
  // The stream counts a wave's submitted items; what their cascades take is said beside them.
  label.append(` of ${n('items')}${n('descendants') ? ` (+${n('descendants')} by cascade)` : ''}`);
  li.append(label, bar);
  return li;
}

function renderBake(v) {
  const until = v?.op?.bakeUntil;
  const baking = v?.op?.state === 'baking' && until;
  $('bake').hidden = !baking;
  if (!baking) return;
  const left = Math.max(0, Math.round((Date.parse(until) - (Date.now() + v.offset)) / 1000));
  $('bake').textContent = `Baking: ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')} left`;
}

function renderProbes(round) {
  $('probes-none').hidden = Boolean(round);
  $('probes').hidden = !round;
  if (!round) return;
  $('probes-caption').textContent = `Wave ${round.wave + 1}, ${when(round.at)}`;
  $('probes')
    .querySelector('tbody')
    .replaceChildren(
      // t_2 before t_10 (sorted as text, t_1, t_10, t_11 … t_2 read as missing tenants: trial M).
      ...[...round.results]
        .sort((a, b) => a.tenantId.localeCompare(b.tenantId, undefined, { numeric: true }))
        .map((r) => {
          const tr = el('tr', null, `probe-${r.result}`);
          // A cascade's descendants' system is named beside the tenant (its own adapter was asked).
          tr.append(
            el('td', r.type ? `${r.tenantId} via ${r.type}` : r.tenantId),
            el('td', r.result),
            el('td', r.detail ?? ''),
          );
          return tr;
        }),
    );
}

function renderActions(v) {
  const allowed = ACTIONS.filter((a) => (me.role === 'admin' || me.role === a.role) && a.when(v.op));
  $('actions').replaceChildren(
    ...allowed.map((a) => {
      const b = el('button', a.label);
      b.type = 'button';
      b.dataset.action = a.key ?? a.path;
      b.addEventListener('click', () => openDialog(v, a));
      return b;
    }),
  );
}

function renderEntry(e) {
  const d = e.detail ?? {};
  const move = e.from || e.to ? ` ${e.from ?? '–'} → ${e.to ?? '–'}` : '';
  const why = d.reason ?? d.haltReason ?? d.comment ?? '';
  // Which wave a wave_started or wave_settled was of (they did not say: trial M); counted from 1.
  const w = typeof e.wave === 'number' ? e.wave : d.wave;
  const wave = typeof w === 'number' && /wave/.test(e.action) ? ` (wave ${w + 1})` : '';
  const li = el('li', `${when(e.at)} ${e.action}${wave}${move} by ${e.actor} (${e.outcome})${why ? `: ${why}` : ''}`);
  li.dataset.seq = String(e.seq);
  li.dataset.action = e.action;
  return li;
}

// ---- commands --------------------------------------------------------------------------------
let pending = null; // the command the dialog is open for

function openDialog(v, action) {
  pending = { v, action };
  const approve = action.path === 'approve';
  $('confirm-title').textContent = `${action.label.replace('…', '')} operation ${v.id}`;
  $('confirm-plan').hidden = !approve;
  if (approve) {
    const p = v.op.plan ?? {};
    $('confirm-plan-summary').textContent =
      `${count(p.itemCount, 'item')}, ${count(p.tenantCount, 'tenant')}, ${count(p.waves?.length ?? 0, 'wave')}` +
      `${p.budgets ? (p.budgets.withinBudget ? ', within budget' : `, over budget: ${p.budgets.breaches.join(', ')}`) : ''}` +
      `${p.requiresBreakGlass ? ', break-glass (needs a second approval by an admin)' : ''}`;
    $('confirm-hash').textContent = v.op.planHash ?? '';
  }
  $('reason-label').textContent = approve ? 'Comment (kept with the approval)' : 'Reason';
  $('reason').value = '';
  $('confirm-error').hidden = true;
  $('confirm').showModal();
}

async function confirm(ev) {
  ev.preventDefault();
  if (!pending) return;
  const { v, action } = pending;
  const reason = $('reason').value.trim();
  if (reason.length < 3) return fail('Give a reason (at least 3 characters).');
  const body = action.path === 'approve' ? { planHash: v.op.planHash, comment: reason } : { reason, ...action.extra };
  try {
    const op = await api(`/v1/operations/${encodeURIComponent(v.id)}/${action.path}`, { method: 'POST', body });
    pending = null;
    $('confirm').close();
    if (view !== v) return;
    applyOperation(v, op);
    render(v);
    if (v.ended) void follow(v); // e.g. a rollback of a completed operation: follow it again
  } catch (err) {
    fail(err.message ?? String(err));
  }
}

function fail(message) {
  $('confirm-error').textContent = message;
  $('confirm-error').hidden = false;
}

// ---- wiring ----------------------------------------------------------------------------------
$('filters').append(
  ...STATES.map((s) => {
    const label = el('label', ` ${s}`);
    const box = el('input');
    box.type = 'checkbox';
    box.value = s;
    box.addEventListener('change', () => void loadList().catch(refreshFailed));
    label.prepend(box);
    return label;
  }),
);
$('login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = $('token').value.trim();
  $('token').value = '';
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  void start();
});
$('forget').addEventListener('click', forget);
$('refresh').addEventListener('click', () => void loadList().catch(refreshFailed));
$('confirm-form').addEventListener('submit', (ev) => void confirm(ev));
$('confirm-cancel').addEventListener('click', () => ((pending = null), $('confirm').close()));
window.addEventListener('hashchange', route);
void start();
