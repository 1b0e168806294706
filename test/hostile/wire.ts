// Turns a plan into bytes on the wire (known IDs picked, raw JSON spliced in, bodies corrupted,
// lone surrogates sent as the invalid UTF-8 a careless client would produce) and sends it over a
// real connection to the app listening on 127.0.0.1: through Node's HTTP client, or as raw bytes
// on a socket of its own when the plan breaks the HTTP framing itself or carries a header value
// the client would refuse to send.
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import type { Role } from '../../src/modules/auth/roles.ts';
import type { Endpoint, Pools } from './model.ts';
import type { BodyPlan, Plan, Slot, WireRequest } from './requests.ts';
import { mutate, RAW_JSON, type Pick } from './values.ts';

/** UTF-8 bytes of a string, with lone surrogates encoded as themselves (invalid UTF-8). */
export function looseUtf8(s: string): Buffer {
  const out: number[] = [];
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
  return Buffer.from(out);
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;
/** Percent-encodes everything but unreserved characters, lone surrogates included. */
export function encode(s: string): string {
  let out = '';
  for (const b of looseUtf8(s)) {
    const c = String.fromCharCode(b);
    out += b < 0x80 && UNRESERVED.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

const fromPool = (pools: Pools, p: Pick) => {
  const list = pools[p.$pick];
  return list.length ? list[p.n % list.length]! : 'none';
};

/** Replaces symbolic picks in a JSON value with known values. */
function resolvePicks(v: unknown, pools: Pools): unknown {
  if (Array.isArray(v)) return v.map((x) => resolvePicks(x, pools));
  if (v && typeof v === 'object') {
    if ('$pick' in v && 'n' in v) return fromPool(pools, v as Pick);
    if ('$unique' in v && Array.isArray(v.$unique))
      return [...new Set((v.$unique as unknown[]).map((x) => JSON.stringify(resolvePicks(x, pools))))].map(
        (x) => JSON.parse(x) as unknown,
      );
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolvePicks(x, pools)]));
  }
  return v;
}

/** JSON text with raw snippets (10,000-deep nesting, 1e400, escaped NUL…) spliced in for their markers. */
function jsonText(v: unknown): string {
  return JSON.stringify(v).replace(/"\\u0001RAW:(\w+)\\u0001"/g, (_m, name: string) => RAW_JSON[name]?.() ?? 'null');
}

const slotText = (slot: Slot, pools: Pools): { text: string; raw: boolean } => {
  if ('raw' in slot) return { text: slot.raw, raw: true };
  if ('pick' in slot) return { text: fromPool(pools, slot.pick), raw: false };
  const v = resolvePicks(slot.value, pools);
  return {
    // eslint-disable-next-line no-control-regex -- the marker is delimited by U+0001 on purpose
    text: typeof v === 'string' ? v.replace(/\u0001RAW:(\w+)\u0001/g, (_m, n: string) => n) : jsonText(v),
    raw: false,
  };
};

/** NDJSON rows of a JSON body: the array field becomes the lines (after a spec line, if any). */
function ndjsonOf(v: unknown): string {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return jsonText(v);
  const entries = Object.entries(v);
  const rows = entries.find(([, x]) => Array.isArray(x));
  if (!rows) return jsonText(v);
  const rest = Object.fromEntries(entries.filter(([k]) => k !== rows[0]));
  const lines = [...(Object.keys(rest).length ? [jsonText(rest)] : []), ...(rows[1] as unknown[]).map(jsonText)];
  return `${lines.join('\n')}\n`;
}

function bodyBytes(b: Extract<BodyPlan, { kind: 'value' }>, pools: Pools): Buffer {
  const value = resolvePicks(
    b.mutations.reduce((v, m) => mutate(v, m), b.value),
    pools,
  );
  let buf: Buffer;
  if (b.type === 'text/plain')
    buf = looseUtf8(
      Array.isArray(value) ? value.map((x) => (typeof x === 'string' ? x : jsonText(x))).join('\n') : String(value),
    );
  else if (b.type === 'application/x-ndjson') buf = looseUtf8(ndjsonOf(value));
  else buf = looseUtf8(jsonText(value));
  const c = b.corrupt;
  if (!c) return buf;
  switch (c.op) {
    case 'invalidUtf8': {
      const at = c.at % (buf.length + 1);
      return Buffer.concat([buf.subarray(0, at), Buffer.from(c.bytes), buf.subarray(at)]);
    }
    case 'truncate':
      return buf.subarray(0, c.at % (buf.length + 1));
    case 'append':
      return Buffer.concat([buf, Buffer.from(c.text)]);
    case 'bom':
      return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), buf]);
    case 'empty':
      return Buffer.alloc(0);
  }
}

/** Larger than every JSON route's limit (8 MB); registry routes take 64 MB and see bad JSON. */
const OVERSIZE = 8 * 1024 * 1024 + 1;

export function materialize(
  plan: Plan,
  endpoints: Endpoint[],
  pools: Pools,
  tokens: Record<Role, string>,
): WireRequest {
  const e = endpoints[plan.endpoint]!;
  const path = e.path.replace(/\{(\w+)\}/g, (_m, name: string) => {
    const slot = plan.path[name];
    if (!slot) return 'none';
    const { text, raw } = slotText(slot, pools);
    return raw ? text : encode(text);
  });
  const query = plan.query.map(([k, slot]) => {
    const { text, raw } = slotText(slot, pools);
    return `${encode(k)}=${raw ? text : encode(text)}`;
  });
  if (plan.hugeQuery) query.push(`pad=${'a'.repeat(20_000)}`);
  const headers: Record<string, string> = {};
  const a = plan.auth;
  if ('role' in a) headers.authorization = `Bearer ${tokens[a.role]}`;
  else if (a.invalid !== 'missing')
    headers.authorization = {
      unknown: 'Bearer bg_not_a_real_token_000000000000',
      malformed: 'Bearer',
      basic: 'Basic YWRtaW46YWRtaW4=',
      long: `Bearer ${'x'.repeat(8000)}`,
      latin1: 'Bearer bg_\u00e9\u00ff',
      lowercaseScheme: `bearer ${tokens.admin}`,
      extraBlanks: `Bearer   ${tokens.admin}\t `,
      twoSecrets: `Bearer ${tokens.admin} ${tokens.viewer}`,
      nulInSecret: `Bearer ${tokens.admin}\u0000`,
    }[a.invalid];
  for (const [k, v] of plan.headers) headers[k] = v;
  let body: Buffer | undefined;
  const b = plan.body;
  if (b.kind === 'value') {
    body = bodyBytes(b, pools);
    if (b.sendAs !== undefined) headers['content-type'] = b.sendAs;
  } else if (b.kind === 'oversize') {
    headers['content-type'] = b.sendAs;
    if (b.declaredOnly) {
      // Declares a body larger than any limit, sends a little: refused on the declaration.
      headers['content-length'] = String(1024 * 1024 * 1024);
      headers.connection = 'close';
      body = Buffer.from('{}');
    } else body = Buffer.alloc(OVERSIZE, 0x61);
  } else if (b.sendAs !== undefined) {
    headers['content-type'] = b.sendAs;
    body = Buffer.from('{}');
  }
  // Explicit, so that a body on a HEAD, GET or DELETE is framed (Node only frames it for some methods).
  if (body && headers['content-length'] === undefined) headers['content-length'] = String(body.length);
  return {
    method: plan.method ?? e.method,
    path: `${path}${query.length ? `?${query.join('&')}` : ''}`,
    headers,
    body,
    ...(plan.framing ? { framing: plan.framing } : {}),
  };
}

const CRLF = '\r\n';

/** The request as raw bytes, with the flaw of its framing. */
export function rawBytes(req: WireRequest): Buffer {
  const f = req.framing;
  let method = req.method;
  let target = req.path;
  let version = 'HTTP/1.1';
  let eol = CRLF;
  const headers: [string, string][] = [];
  if (f !== 'noHost' && f !== 'http10') headers.push(['host', '127.0.0.1']);
  let body = req.body ?? Buffer.alloc(0);
  for (const [k, v] of Object.entries(req.headers)) {
    if (k === 'connection' || (k === 'content-length' && f !== undefined && BODY_FRAMINGS.has(f))) continue;
    headers.push([k, v]);
  }
  switch (f) {
    case 'expect':
      headers.push(['expect', '200-ok']);
      break;
    case 'http10':
      version = 'HTTP/1.0';
      break;
    case 'absoluteForm':
      target = `http://127.0.0.1${target}`;
      break;
    case 'rawBytesInTarget':
      target = `${target.split('?')[0]}/\u00e9 \u202e`;
      break;
    case 'nulInTarget':
      target = `${target}\u0000x`;
      break;
    case 'headerNul':
      headers.push(['x-fuzz', 'a\u0000b']);
      break;
    case 'headerControl':
      headers.push(['x-fuzz', 'a\u001bb\u007f']);
      break;
    case 'bareLf':
      eol = '\n';
      break;
    case 'obsFold':
      headers.push(['x-fuzz', `a${CRLF} folded`]);
      break;
    case 'spaceBeforeColon':
      headers.push(['x-fuzz ', 'a']);
      break;
    case 'dupContentLength':
      headers.push(['content-length', String(body.length)], ['content-length', String(body.length + 1)]);
      break;
    case 'badContentLength':
      headers.push(['content-length', `-${body.length}`]);
      break;
    case 'chunked':
    case 'clAndTe':
      if (f === 'clAndTe') headers.push(['content-length', String(body.length)]);
      headers.push(['transfer-encoding', 'chunked']);
      body = Buffer.concat([
        ...(body.length ? [Buffer.from(`${body.length.toString(16)}${CRLF}`), body, Buffer.from(CRLF)] : []),
        Buffer.from(`0${CRLF}${CRLF}`),
      ]);
      break;
    case 'badChunk':
      headers.push(['transfer-encoding', 'chunked']);
      body = Buffer.concat([Buffer.from(`zz${CRLF}`), body, Buffer.from(`${CRLF}0${CRLF}${CRLF}`)]);
      break;
    case 'teGzip':
      headers.push(['transfer-encoding', 'gzip'], ['content-length', String(body.length)]);
      break;
    case 'contentEncoding':
      headers.push(['content-encoding', 'gzip']);
      break;
    case 'badVersion':
      version = 'HTTP/1.7';
      break;
    case 'lowercaseMethod':
      method = method.toLowerCase();
      break;
    case 'pipelined':
    case 'noHost':
    case undefined:
      break;
  }
  if (f === 'contentEncoding' && req.headers['content-length'] === undefined)
    headers.push(['content-length', String(body.length)]);
  headers.push(['connection', 'close']);
  const head = (m: string, t: string, hs: [string, string][]) =>
    looseUtf8(`${m} ${t} ${version}${eol}${hs.map(([k, v]) => `${k}: ${v}${eol}`).join('')}${eol}`);
  const request = Buffer.concat([head(method, target, headers), body]);
  if (f !== 'pipelined') return request;
  // A well-formed request first, on the same connection (kept alive), then this one.
  const first = head('GET', '/healthz', [['host', '127.0.0.1']]);
  return Buffer.concat([first, request]);
}

/** Framings that write their own Content-Length (or none). */
const BODY_FRAMINGS = new Set<string>([
  'dupContentLength',
  'badContentLength',
  'chunked',
  'clAndTe',
  'badChunk',
  'teGzip',
]);

/** Every response on a raw connection (interim 1xx answers skipped), in order. */
function parseResponses(data: Buffer, methods: string[]): WireResponse[] {
  const out: WireResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at);
    if (end === -1) {
      out.push({ status: 0, headers: {}, body: data.subarray(at), error: 'incomplete response head' });
      break;
    }
    const lines = data.subarray(at, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    at = end + 4;
    if (status >= 100 && status < 200) continue;
    const method = methods[out.length] ?? '';
    let body: Buffer = Buffer.alloc(0);
    if (method !== 'HEAD') {
      if (headers['transfer-encoding'] === 'chunked') {
        const parts: Buffer[] = [];
        for (;;) {
          const lineEnd = data.indexOf('\r\n', at);
          const size = parseInt(data.subarray(at, lineEnd).toString('latin1'), 16);
          at = lineEnd + 2;
          if (!size) {
            at += 2;
            break;
          }
          parts.push(data.subarray(at, at + size));
          at += size + 2;
        }
        body = Buffer.concat(parts);
      } else {
        const length = Number(headers['content-length'] ?? data.length - at);
        body = data.subarray(at, at + length);
        at += length;
      }
    }
    out.push({ status, headers, body });
  }
  return out;
}

/**
 * Sends raw bytes on a connection of its own and reads until the server closes it (every raw
 * request asks for that). Several answers for a pipelined request, the last being the hostile one.
 */
export function sendRaw(port: number, req: WireRequest, timeoutMs = SILENT_MS): Promise<WireResponse[]> {
  // A lowercase `head` is no HEAD to the server (it is refused with a body like any error).
  const method = req.framing === 'lowercaseMethod' ? req.method.toLowerCase() : req.method;
  const methods = req.framing === 'pipelined' ? ['GET', method] : [method];
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(new Error(`connection still open after ${timeoutMs} ms`)), timeoutMs);
    let error: string | undefined;
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (e) => (error = e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      const data = Buffer.concat(chunks);
      const answers = data.length ? parseResponses(data, methods) : [];
      resolve(
        answers.length ? answers : [{ status: 0, headers: {}, body: data, error: error ?? 'closed without an answer' }],
      );
    });
    // Not half-closed: Node aborts a request whose client ended its side of the connection.
    socket.write(rawBytes(req));
  });
}

export interface WireResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** A transport error instead of an answer (the connection was reset before any response). */
  error?: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 1 });

/**
 * How long a connection may sit silent waiting for an answer: far above a loaded machine's latency,
 * far below the keep-alive timeout (72 s) a stalled connection would otherwise wait for.
 */
const SILENT_MS = 20_000;

export function send(port: number, req: WireRequest, timeoutMs = SILENT_MS): Promise<WireResponse> {
  return new Promise((resolve) => {
    const r = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: req.method,
        path: req.path,
        headers: req.headers,
        agent: req.headers.connection === 'close' ? false : agent,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        // An event stream (GET …/events) answers for as long as its operation runs: its first frame
        // is the answer; the client then hangs up, as a real one may at any time.
        if (String(res.headers['content-type']).startsWith('text/event-stream')) {
          res.once('data', (c: Buffer) => {
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: c });
            r.destroy();
          });
          return;
        }
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', (err) =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            error: err.message,
          }),
        );
      },
    );
    r.on('timeout', () => r.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    r.on('error', (err) => resolve({ status: 0, headers: {}, body: Buffer.alloc(0), error: err.message }));
    r.end(req.body);
  });
}

export const closeAgent = () => agent.destroy();
