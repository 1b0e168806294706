// Security headers on every response (helmet), with a Content-Security-Policy that the
// pages this server serves work under: Swagger UI at /docs and the live view at /ui. The
// rule for such pages: scripts, styles, images and fonts are files served by this server (no
// inline <script>, no CDN), data is fetched from this origin (fetch, also for the operation
// event stream). Inline styles are allowed because Swagger UI applies some
// (swagger-api/swagger-ui#10655); inline scripts and eval are not.
import type { IncomingMessage, ServerResponse } from 'node:http';
import fp from 'fastify-plugin';
import helmet from 'helmet';

export const CSP_DIRECTIVES = {
  'default-src': ["'self'"],
  'base-uri': ["'self'"],
  'connect-src': ["'self'"],
  'font-src': ["'self'", 'data:'],
  'form-action': ["'self'"],
  'frame-ancestors': ["'none'"],
  'img-src': ["'self'", 'data:'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'script-src-attr': ["'none'"],
  'style-src': ["'self'", "'unsafe-inline'"],
};

/**
 * The headers helmet sets with these options, worked out once. They are the same for every
 * response (no CSP nonce), and @fastify/helmet built helmet's middleware again for each request,
 * parsing the CSP directives each time: ~4% of the API's CPU per GET under load (--cpu-prof,
 * bench/control.ts, 2026-12-03).
 */
function helmetHeaders(): { set: [string, string][]; removed: string[] } {
  const set: [string, string][] = [];
  const removed: string[] = [];
  const res = {
    setHeader: (name: string, value: string) => set.push([name, String(value)]),
    removeHeader: (name: string) => removed.push(name),
  };
  helmet({
    contentSecurityPolicy: {
      // Not helmet's defaults: they add upgrade-insecure-requests, which sends a browser on plain
      // http (embedded mode, http://127.0.0.1:3000) to https for every script, breaking /docs.
      useDefaults: false,
      directives: CSP_DIRECTIVES,
    },
    // The API is never framed (frame-ancestors 'none' above, for browsers without CSP).
    frameguard: { action: 'deny' },
  })({} as IncomingMessage, res as unknown as ServerResponse, (err?: unknown) => {
    if (err) throw err instanceof Error ? err : new Error('helmet could not work out its headers');
  });
  return { set, removed };
}

export default fp(
  async (app) => {
    const { set, removed } = helmetHeaders();
    // On the raw response, as @fastify/helmet did: a hijacked reply (the event streams) keeps them.
    app.addHook('onRequest', (_req, reply, done) => {
      for (const [name, value] of set) reply.raw.setHeader(name, value);
      for (const name of removed) reply.raw.removeHeader(name);
      done();
    });
  },
  { name: 'helmet' },
);
