// What every answer to a hostile request must be: never a 5xx; an error body in the project's
// shape ({ code, message, details, requestId }) that says what is allowed; and tallies for the
// closing figures.
import type { WireRequest } from './requests.ts';
import type { WireResponse } from './wire.ts';

export interface ErrorBody {
  code: string;
  message: string;
  details: unknown;
  requestId: string;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isList = (v: unknown) => Array.isArray(v) && v.length > 0;

/** Per code, what `details` must carry so that the client learns what is allowed. */
const SAYS_WHAT_IS_ALLOWED: Record<string, (d: unknown) => boolean> = {
  VALIDATION_FAILED: (d) =>
    isList(d) &&
    (d as unknown[]).every((x) => isObj(x) && typeof x.field === 'string' && typeof x.message === 'string'),
  UNSUPPORTED_MEDIA_TYPE: (d) => isObj(d) && Array.isArray(d.accepted),
  PAYLOAD_TOO_LARGE: (d) => isObj(d) && typeof d.maxBytes === 'number',
  TOO_MANY_IDS: (d) => isObj(d) && typeof d.maxIds === 'number',
  INVALID_UTF8: (d) => isObj(d) && typeof d.line === 'number' && typeof d.byteOffset === 'number',
  BODY_TOO_DEEP: (d) => isObj(d) && typeof d.maxDepth === 'number' && typeof d.field === 'string',
  FORBIDDEN: (d) => isObj(d) && (Array.isArray(d.allowedRoles) || d.allowedRoles === 'any' || 'role' in d),
  INVALID_IDS: (d) => isObj(d) && isList(d.invalid),
  PLAN_REJECTED: (d) => isObj(d) && isObj(d.counts) && isObj(d.offenders) && 'reportUrl' in d,
  INVALID_TYPE_DECLARATION: (d) => isList(d),
  REGISTRY_REJECTED: (d) => isObj(d) && isObj(d.counts),
  SPEC_IN_QUERY: (d) => isObj(d) && Array.isArray(d.fields),
  MALFORMED_NDJSON: (d) => isObj(d) && typeof d.line === 'number',
  LINE_TOO_LONG: (d) => isObj(d) && typeof d.maxLineBytes === 'number',
  REQUEST_TOO_LARGE: (d) => isObj(d) && typeof d.maxBytes === 'number',
  EXPECTATION_FAILED: (d) => isObj(d) && Array.isArray(d.allowed),
  MISSING_HOST: (d) => isObj(d) && d.header === 'host',
  DUPLICATE_HEADER: (d) => isObj(d) && typeof d.header === 'string' && typeof d.count === 'number',
  DUPLICATE_KEY: (d) => isObj(d) && typeof d.key === 'string' && typeof d.field === 'string',
  INVALID_CURSOR: (d) => isList(d) && (d as unknown[]).every((x) => isObj(x) && x.field === 'querystring.cursor'),
};

/** Problems with one answer (empty: it is fine). */
export function checkAnswer(req: WireRequest, res: WireResponse): string[] {
  const problems: string[] = [];
  if (res.status === 0) return [`no answer: ${res.error ?? 'connection closed'}`];
  if (res.status >= 500) problems.push(`server error ${res.status}`);
  if (res.status < 400 || req.method === 'HEAD') return problems;
  let body: unknown;
  try {
    body = JSON.parse(res.body.toString('utf8'));
  } catch {
    return [...problems, `error body is not JSON: ${res.body.toString('utf8').slice(0, 200)}`];
  }
  if (!isObj(body)) return [...problems, 'error body is not an object'];
  const keys = Object.keys(body).sort().join(',');
  if (keys !== 'code,details,message,requestId') problems.push(`error body has keys ${keys}`);
  const b = body as unknown as ErrorBody;
  if (typeof b.code !== 'string' || !/^[A-Z][A-Z0-9_]+$/.test(b.code) || /^(FST_|CTP_|ERR_)/.test(b.code))
    problems.push(`error code ${JSON.stringify(b.code)} is not one of the project's`);
  if (typeof b.message !== 'string' || b.message.length < 10) problems.push('error message missing or empty');
  if (typeof b.requestId !== 'string' || !b.requestId) problems.push('requestId missing');
  const rule = SAYS_WHAT_IS_ALLOWED[b.code];
  if (rule && !rule(b.details))
    problems.push(`${b.code} details do not say what is allowed: ${JSON.stringify(b.details).slice(0, 300)}`);
  return problems;
}

export function errorCode(res: WireResponse): string | undefined {
  if (res.status < 400) return undefined;
  try {
    return (JSON.parse(res.body.toString('utf8')) as ErrorBody).code;
  } catch {
    return undefined;
  }
}

export class Tally {
  requests = 0;
  serverErrors = 0;
  byStatus = new Map<number, number>();
  byCode = new Map<string, number>();
  byRoute = new Map<string, number>();
  byRouteStatus = new Map<string, Map<number, number>>();
  readonly started = Date.now();

  /** The slowest exchanges (request summary and milliseconds), slowest first. */
  slowest: [string, number][] = [];

  record(route: string, res: WireResponse, ms = 0, what = route) {
    this.requests++;
    if (this.slowest.length < 5 || ms > this.slowest[this.slowest.length - 1]![1]) {
      this.slowest = [...this.slowest, [what, Math.round(ms)] as [string, number]]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5);
    }
    if (res.status >= 500) this.serverErrors++;
    this.byStatus.set(res.status, (this.byStatus.get(res.status) ?? 0) + 1);
    const code = errorCode(res);
    if (code) this.byCode.set(code, (this.byCode.get(code) ?? 0) + 1);
    if (res.status < 400) this.byRoute.set(route, (this.byRoute.get(route) ?? 0) + 1);
    const statuses = this.byRouteStatus.get(route) ?? new Map<number, number>();
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    this.byRouteStatus.set(route, statuses);
  }

  summary(seed: number): string {
    const sorted = <K>(m: Map<K, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    return [
      `hostile requests: ${this.requests} in ${seconds} s (seed ${seed}); 5xx: ${this.serverErrors}`,
      `by class: ${sorted(
        [...this.byStatus.entries()].reduce((m, [st, n]) => {
          const c = st === 0 ? 'none' : `${Math.floor(st / 100)}xx`;
          return m.set(c, (m.get(c) ?? 0) + n);
        }, new Map<string, number>()),
      )
        .map(([c, n]) => `${c}=${n}`)
        .join(' ')}`,
      `by status: ${sorted(this.byStatus)
        .map(([s, n]) => `${s}=${n}`)
        .join(' ')}`,
      `refusals by code: ${sorted(this.byCode)
        .map(([c, n]) => `${c}=${n}`)
        .join(' ')}`,
      `slowest: ${this.slowest.map(([w, ms]) => `${ms} ms ${w}`).join('; ')}`,
      'by route:',
      ...[...this.byRouteStatus.entries()]
        .sort((a, b) => (a[0] < b[0] ? -1 : 1))
        .map(
          ([r, m]) =>
            `  ${r}: ${sorted(m)
              .map(([st, n]) => `${st}=${n}`)
              .join(' ')}`,
        ),
    ].join('\n');
  }
}
