// The live operation view at /ui: one HTML page, one vanilla JS module and one stylesheet, served
// from memory (read once at start-up). No build chain: the files in ./static are what the browser
// gets. They load under the CSP of plugins/helmet.ts (own scripts and styles only, fetch to this
// origin), and the page holds no secret: the token lives in the tab's sessionStorage.
//
// Caching: the page itself is `no-cache` (revalidated on every load, by ETag), and it names its
// script and stylesheet with a hash of their content (`/ui/app.js?v=<hash>`), so those may be
// cached for good — a new version of the server gives a new page with new names, never a new
// page with an old script.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { App } from '../../lib/schemas.ts';

export const UI_PATH = '/ui';

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  version: string;
}

const STATIC = new URL('./static/', import.meta.url);
const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function asset(file: string, type: string, transform?: (text: string) => string): Asset {
  let body = readFileSync(new URL(file, STATIC));
  if (transform) body = Buffer.from(transform(body.toString('utf8')), 'utf8');
  const hash = digest(body);
  return { body, type, etag: `"${hash.slice(0, 32)}"`, version: hash.slice(0, 16) };
}

function loadAssets() {
  const script = asset('app.js', 'text/javascript; charset=utf-8');
  const style = asset('app.css', 'text/css; charset=utf-8');
  const page = asset('index.html', 'text/html; charset=utf-8', (html) =>
    html
      .replaceAll('{{APP_JS}}', `${UI_PATH}/app.js?v=${script.version}`)
      .replaceAll('{{APP_CSS}}', `${UI_PATH}/app.css?v=${style.version}`),
  );
  return { page, script, style };
}

function send(req: FastifyRequest, reply: FastifyReply, a: Asset, immutable: boolean) {
  reply
    .header('content-type', a.type)
    .header('etag', a.etag)
    .header('cache-control', immutable ? 'public, max-age=31536000, immutable' : 'no-cache');
  if (req.headers['if-none-match'] === a.etag) return reply.status(304).send();
  return reply.send(a.body);
}

export default async function uiRoutes(app: App) {
  const { page, script, style } = loadAssets();
  const versioned = (req: FastifyRequest, a: Asset) => (req.query as { v?: unknown }).v === a.version;
  const hidden = { schema: { hide: true } };
  app.get(UI_PATH, hidden, (req, reply) => send(req, reply, page, false));
  app.get(`${UI_PATH}/`, hidden, (req, reply) => send(req, reply, page, false));
  app.get(`${UI_PATH}/app.js`, hidden, (req, reply) => send(req, reply, script, versioned(req, script)));
  app.get(`${UI_PATH}/app.css`, hidden, (req, reply) => send(req, reply, style, versioned(req, style)));
}
