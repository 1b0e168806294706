// Request deadlines, so that no request holds anything forever (a socket, memory, a staging table):
// - receiving a request (headers and body) must finish within requestTimeoutMs. A body that
//   trickles is cut off on every route by installBodyDeadline, answered 408 REQUEST_TIMEOUT in the
//   project's error shape; Node's own requestTimeout is a backstop a little later, for requests
//   that never reach a route (slow headers), answered by clientErrorHandler in the same shape;
// - a request answered before its body was all read has the rest drained (installBodyDeadline),
//   so that its keep-alive connection serves the next request, and a client still sending gets
//   the answer (a 413 included) instead of a reset;
// - answering must finish within handlerTimeoutMs: 503 HANDLER_TIMEOUT with Retry-After
//   (installHandlerDeadline). A submission still planning, or an operator command not yet
//   committed, then rolls back instead of committing.
//   Not Fastify's own handlerTimeout: in 5.12 the end of a request body clears its timer, so it
//   never fires for a request with a body (fastify/fastify#6725).
import { randomUUID } from 'node:crypto';
import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import type { ConnectionError, FastifyInstance } from 'fastify';
import type { Limits } from '../config.ts';
import { BadRequestError, RequestTimeoutError, RetryLaterError } from '../lib/errors.ts';
import { documentErrorResponses, takesBody } from '../lib/schemas.ts';

// Node checks its requestTimeout only every connectionsCheckingInterval (30 s by default): check
// every second, and let the backstop fire after the precise deadline, never before it.
const CHECK_EVERY_MS = 1_000;
const BACKSTOP_AFTER_MS = 2_000;

const HANDLER_TIMEOUT_RETRY_AFTER_S = 5;

/** Fastify server options for the deadlines (set where the app is built). */
export function serverTimeoutOptions(limits: Pick<Limits, 'requestTimeoutMs'>) {
  return {
    requestTimeout: limits.requestTimeoutMs + BACKSTOP_AFTER_MS,
    http: { connectionsCheckingInterval: CHECK_EVERY_MS },
    clientErrorHandler: clientErrorHandler(limits.requestTimeoutMs),
  };
}

/**
 * Every request is answered within handlerTimeoutMs of its arrival: 503 HANDLER_TIMEOUT otherwise.
 * The handler is not stopped (nothing in Node can stop it); work that must not outlive its answer
 * checks `reply.sent` before it commits (submissions and operator commands do).
 */
export function installHandlerDeadline(app: FastifyInstance, handlerTimeoutMs: number) {
  app.addHook('onRequest', async (request, reply) => {
    const timer = setTimeout(
      () => {
        if (reply.sent || reply.raw.headersSent) return;
        // A command that committed before the deadline is not rolled back: it takes effect, and the
        // answer says so (a probe was told "rolled back" for a start whose deletes then went out).
        const committed = request.commandCommitted === true;
        void reply.send(
          new RetryLaterError(
            503,
            'HANDLER_TIMEOUT',
            committed
              ? `No answer within ${handlerTimeoutMs} ms (BLASTGATE_HANDLER_TIMEOUT_MS), but the command was committed before it and takes effect: do not send it again; GET the operation for its state`
              : `No answer within ${handlerTimeoutMs} ms (BLASTGATE_HANDLER_TIMEOUT_MS); retry later. A submission or command that times out is rolled back`,
            HANDLER_TIMEOUT_RETRY_AFTER_S,
            { limitMs: handlerTimeoutMs, ...(committed ? { committed: true } : {}) },
          ),
        );
      },
      Math.max(0, handlerTimeoutMs - reply.elapsedTime),
    );
    // The response went out, or the connection is gone: either way there is no one left to answer.
    reply.raw.once('close', () => clearTimeout(timer));
  });
}

/**
 * Errors on a connection before (or instead of) a routed request (Node could not parse it, or its
 * headers came too slowly): answered in the project's error shape when nothing was written yet,
 * then the socket is closed (its state is unknown).
 */
function clientErrorHandler(requestTimeoutMs: number) {
  return (err: ConnectionError, socket: Socket) => {
    if (err.code === 'ECONNRESET' || socket.destroyed || lingering.has(socket)) return;
    const [status, code, message, details] =
      err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'REQUEST_TIMEOUT', new RequestTimeoutError(requestTimeoutMs).message, { limitMs: requestTimeoutMs }]
        : err.code === 'HPE_HEADER_OVERFLOW'
          ? [
              431,
              'REQUEST_TOO_LARGE',
              `The request line and headers are larger than the ${maxHeaderSize} bytes the server accepts; send long lists in the body`,
              { maxBytes: maxHeaderSize },
            ]
          : [400, 'MALFORMED_REQUEST', 'The request is not valid HTTP/1.1', null];
    // As Node's own default: answer unless a response on this socket has started (a keep-alive
    // socket that finished earlier responses is answered too).
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (socket.writable && !inFlight?.headersSent) {
      const body = JSON.stringify({ code, message, details, requestId: randomUUID() });
      // The answer to a HEAD request has no body (its client would read one as garbage); the
      // request was not parsed, so its method is read from the bytes that failed.
      const raw: unknown = err.rawPacket;
      const head = Buffer.isBuffer(raw) && raw.subarray(0, 5).toString('latin1') === 'HEAD ';
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\n` +
          `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${head ? '' : body}`,
      );
      lingerThenClose(socket);
    } else socket.destroy(err);
  };
}

/**
 * After an answer to a request that could not be read, what the client still sends is read and
 * dropped for at most LINGER_MS (and LINGER_BYTES), then the socket closes. Closing at once with
 * the client's bytes unread resets the connection (RFC 9112 §9.6), and a reset can cost the
 * client the answer: a 4 MB request line read 200 ms late got ECONNRESET and not one byte of its
 * 431 (Node 20); on Node 24 even a 100 kB one read at once ended in a reset.
 */
const LINGER_MS = 3_000;
const LINGER_BYTES = 64 * 1024 * 1024;
const lingering = new WeakSet<Socket>();

function lingerThenClose(socket: Socket) {
  lingering.add(socket);
  // The HTTP parser failed on these bytes: it must not see the rest.
  socket.removeAllListeners('data');
  let read = 0;
  // The socket's 'close' (below) clears the timer, however it closes.
  const close = () => socket.destroy();
  const timer = setTimeout(close, LINGER_MS);
  socket.on('data', (chunk: Buffer) => {
    read += chunk.length;
    if (read > LINGER_BYTES) close();
  });
  // The client is done: close once the answer is out (destroy drops what is not written yet).
  socket.once('end', () => (socket.writableFinished ? close() : socket.once('finish', close)));
  socket.once('close', () => clearTimeout(timer));
  socket.end();
  socket.resume();
}

/**
 * Every request body must be received within requestTimeoutMs of the request's arrival. The body
 * reaches parsers and streamed-upload handlers through a pass-through that fails with 408 at the
 * deadline, so a handler reading it stops and cleans up (nothing is half-written). The socket is
 * closed after the answer: the client may still be sending.
 */
export function installBodyDeadline(app: FastifyInstance, requestTimeoutMs: number) {
  documentErrorResponses(app, [408], takesBody);
  // Every route may run out of time (or find no database connection free).
  documentErrorResponses(app, [503]);
  app.addHook('preParsing', async (request, reply, payload) => {
    const headers = request.headers;
    if (headers['transfer-encoding'] === undefined && !(Number(headers['content-length'] ?? 0) > 0)) return payload;
    const raw = payload as Readable;
    const body = new PassThrough();
    const timer = setTimeout(
      () => {
        reply.header('connection', 'close');
        raw.unpipe(body);
        body.destroy(new RequestTimeoutError(requestTimeoutMs, 'The request body'));
      },
      Math.max(0, requestTimeoutMs - reply.elapsedTime),
    );
    const settle = () => clearTimeout(timer);
    raw.once('end', settle);
    body.once('close', settle);
    reply.raw.once('close', settle);
    // Whoever reads the body sees its errors; this listener only keeps an error on a body nobody
    // reads any more (the request was already answered) from crashing the process.
    body.on('error', () => undefined);
    // A client that goes away mid-body: whoever reads the body must stop waiting for the rest (and
    // nobody is left to answer, so this is the client's doing, not a server error).
    const gone = () => body.destroy(new BadRequestError('CLIENT_CLOSED', 'The client closed the connection mid-body'));
    raw.on('error', gone);
    raw.once('close', () => {
      if (!raw.readableEnded) gone();
    });
    // Answered before the body was all read (refused early, or out of time): the rest is read and
    // dropped, as Node does itself for a body nobody reads (it cannot see this one is unread, as it
    // is piped here), so the connection can carry the client's next request. Without this, that
    // request sat behind the unread bytes until the keep-alive timeout closed the connection (72 s).
    // Node's requestTimeout still bounds how long a client may take to send the rest.
    reply.raw.once('finish', () => {
      if (raw.readableEnded) return;
      raw.unpipe(body);
      body.destroy(new BadRequestError('ANSWERED', 'The request was answered before its body was read'));
      raw.resume();
    });
    raw.pipe(body);
    return body;
  });
  // A body declared (or found) larger than the route takes is refused at once, and Fastify then
  // closes the connection ("the client may send more"). A client still sending what it declared
  // (curl does, after its "100 Continue") then met a reset and lost the answer ("Send failure:
  // Broken pipe", 10-30% of 60 MB uploads). The rest is drained instead (above), within the
  // request deadline; only a body declared absurdly large still has its connection closed.
  app.addHook('onSend', async (request, reply, payload) => {
    if (reply.statusCode !== 413 || request.raw.readableEnded) return payload;
    if (Number(request.headers['content-length'] ?? 0) > MAX_DRAINED_BYTES) return payload;
    reply.removeHeader('connection');
    return payload;
  });
}

/** The most of a refused body that is read and dropped so that its answer reaches the client. */
const MAX_DRAINED_BYTES = 1024 * 1024 * 1024;

declare module 'fastify' {
  interface FastifyRequest {
    /** An operator command of this request committed (execution/routes.ts): a late deadline must not say it rolled back. */
    commandCommitted?: boolean;
  }
}
