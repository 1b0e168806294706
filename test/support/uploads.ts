// Slow clients for the load tests: an operation upload (NDJSON) that sends a burst of IDs and then
// trickles one more line at a time, the way a stalled CI job or a hostile client would, over a
// real socket to a listening app on 127.0.0.1.
import http from 'node:http';

export interface TrickleResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface TricklingUpload {
  /** Settles when the server answers (or the socket fails: status 0). */
  response: Promise<TrickleResult>;
  /** Stops trickling and closes the socket. */
  stop(): void;
}

export interface TrickleOptions {
  port: number;
  token: string;
  /** IDs sent at once after the spec line. */
  burst: string[];
  /** One more ID line every this many ms, until stop() or an answer. */
  everyMs: number;
  contentType?: 'application/x-ndjson' | 'application/json';
  spec?: Record<string, unknown>;
}

export function trickleUpload(o: TrickleOptions): TricklingUpload {
  const spec = o.spec ?? { targetType: 'app', reason: 'slow upload', ticket: 'CHG-SLOW' };
  const json = o.contentType === 'application/json';
  const req = http.request({
    host: '127.0.0.1',
    port: o.port,
    method: 'POST',
    path: '/v1/operations',
    headers: { authorization: `Bearer ${o.token}`, 'content-type': o.contentType ?? 'application/x-ndjson' },
  });
  if (json) req.write(`{"targetType":${JSON.stringify(spec.targetType)},"reason":"slow","ticket":"CHG-SLOW","ids":[`);
  else req.write(`${JSON.stringify(spec)}\n${o.burst.map((id) => `"${id}"\n`).join('')}`);
  if (json) req.write(o.burst.map((id) => `"${id}",`).join(''));
  let n = 0;
  const timer = setInterval(() => {
    if (req.destroyed) return clearInterval(timer);
    req.write(json ? `"trickle_${n++}",` : `"trickle_${n++}"\n`);
  }, o.everyMs);
  const response = new Promise<TrickleResult>((resolve) => {
    req.on('response', (res) => {
      clearInterval(timer);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', (err) => {
      clearInterval(timer);
      resolve({ status: 0, headers: {}, body: err.message });
    });
  });
  return {
    response,
    stop() {
      clearInterval(timer);
      req.destroy();
    },
  };
}
