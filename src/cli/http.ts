// The API client: JSON requests, a streamed NDJSON upload, and one error shape. Any answer that is
// not 2xx becomes a CliError carrying the server's `code`, message and details (a 422
// PLAN_REJECTED exits 10; everything else 1); a connection that fails says where it tried.
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { byFlag, CliError, EXIT } from './exit-codes.ts';
import type { Connection } from './config.ts';

export interface ApiErrorBody {
  code?: string;
  message?: string;
  details?: unknown;
  requestId?: string;
}

export interface RequestOptions {
  body?: unknown;
  /** A streamed body (sent as it is produced, never held whole). */
  stream?: AsyncIterable<Uint8Array>;
  contentType?: string;
  headers?: Record<string, string>;
  query?: Record<string, string | number | boolean | undefined>;
  signal?: AbortSignal;
}

export class ApiClient {
  constructor(readonly conn: Connection) {}

  url(path: string, query?: RequestOptions['query']): string {
    const u = new URL(this.conn.url + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u.toString();
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.conn.token ? { authorization: `Bearer ${this.conn.token}` } : {}), ...extra };
  }

  /** Sends a request; the raw response (any status) or a CliError for a failed connection. */
  async raw(method: string, path: string, o: RequestOptions = {}): Promise<Response> {
    const headers = this.headers(o.headers);
    let body: string | AsyncIterable<Uint8Array> | undefined;
    if (o.stream) {
      body = o.stream;
      headers['content-type'] = o.contentType ?? 'application/x-ndjson';
    } else if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['content-type'] = 'application/json';
    }
    try {
      // duplex 'half': a streamed request body (Node's fetch needs it said explicitly).
      return await fetch(this.url(path, o.query), {
        method,
        headers,
        body: body as never,
        ...(o.stream ? { duplex: 'half' } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
      });
    } catch (err) {
      if (err instanceof CliError) throw err;
      // An error of the streamed body (a bad line in the ID list) surfaces as fetch's cause.
      const cause = (err as { cause?: unknown }).cause;
      if (cause instanceof CliError) throw cause;
      throw connectionError(this.conn.url, err, this.conn.token);
    }
  }

  async request<T = unknown>(method: string, path: string, o: RequestOptions = {}): Promise<T> {
    return (await this.answer<T>(method, path, o)).body;
  }

  /** As `request`, with the 2xx status (e.g. 200 for an idempotent replay where a new plan is 201). */
  async answer<T = unknown>(
    method: string,
    path: string,
    o: RequestOptions = {},
  ): Promise<{ status: number; body: T }> {
    if (o.stream) {
      const { status, text } = await this.upload(method, path, o.stream, o);
      return { status, body: parseAnswer(status, text) as T };
    }
    const res = await this.raw(method, path, o);
    return { status: res.status, body: (await readJson(res)) as T };
  }

  /**
   * A streamed body over node:http with backpressure: the next chunk is produced only when the
   * socket took the previous one, so the body is never buffered whole (fetch's streamed bodies
   * give no such guarantee). An error of the body itself (a bad line) rejects with that error.
   */
  upload(
    method: string,
    path: string,
    body: AsyncIterable<Uint8Array>,
    o: RequestOptions,
  ): Promise<{ status: number; text: string }> {
    const u = new URL(this.url(path, o.query));
    const headers = this.headers({ ...o.headers, 'content-type': o.contentType ?? 'application/x-ndjson' });
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = (u.protocol === 'https:' ? https : http).request(u, { method, headers }, (res) => {
        answered = true;
        const parts: Buffer[] = [];
        res.on('data', (b: Buffer) => parts.push(b));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }));
        res.on('error', (err) => reject(connectionError(this.conn.url, err, this.conn.token)));
      });
      req.on('error', (err) => {
        if (!answered) reject(connectionError(this.conn.url, err, this.conn.token));
      });
      pipeline(Readable.from(body, { objectMode: false }), req).catch((err: unknown) => {
        // The server may answer (and close) before the whole body is sent, e.g. 401 or 413: that
        // answer is what counts. A failure of the body itself is the caller's error.
        if (err instanceof CliError) {
          req.destroy();
          reject(err);
        }
      });
    });
  }

  get = <T = unknown>(path: string, query?: RequestOptions['query']) => this.request<T>('GET', path, { query });
  post = <T = unknown>(path: string, body?: unknown, headers?: Record<string, string>) =>
    this.request<T>('POST', path, { body: body ?? {}, ...(headers ? { headers } : {}) });
}

/** The JSON body of a 2xx answer, or the server's error as a CliError. */
export async function readJson(res: Response): Promise<unknown> {
  return parseAnswer(res.status, await res.text());
}

function parseAnswer(status: number, text: string): unknown {
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = undefined;
  }
  if (status >= 200 && status < 300) return parsed;
  throw apiError(status, parsed as ApiErrorBody | undefined, text);
}

export function apiError(status: number, body: ApiErrorBody | undefined, text = ''): CliError {
  const code = body?.code ?? `HTTP_${status}`;
  const message = body?.message ?? (text.slice(0, 200) || `the server answered ${status}`);
  // A 400 is a request the server could not take as sent: built from this invocation's flags and
  // ID list, it is a usage error (exit 2), as the CLI's own checks of them are; a pipeline then
  // knows that retrying the same command cannot help (a trial read exit 1 as "try again").
  const exit = code === 'PLAN_REJECTED' ? EXIT.rejected : status === 400 || byFlag(code) ? EXIT.usage : EXIT.error;
  const err = new CliError(exit, code, message, body?.details, status);
  if (typeof body?.requestId === 'string') err.requestId = body.requestId;
  return err;
}

function connectionError(url: string, err: unknown, token?: string): CliError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const why = cause?.code ?? cause?.message ?? (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  // A client library's message may quote the request's headers: never the token (config.ts).
  const said = token ? String(why).replaceAll(token, '[token]') : String(why);
  return new CliError(EXIT.error, 'CONNECTION_FAILED', `cannot reach ${url}: ${said}`);
}
