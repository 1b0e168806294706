// Security headers on every response (@fastify/helmet), with a Content-Security-Policy that the
// pages this server serves work under: Swagger UI at /docs and the live view at /ui. The
// rule for such pages: scripts, styles, images and fonts are files served by this server (no
// inline <script>, no CDN), data is fetched from this origin (fetch, also for the operation
// event stream). Inline styles are allowed because Swagger UI applies some
// (swagger-api/swagger-ui#10655); inline scripts and eval are not.
import fp from 'fastify-plugin';
import helmet from '@fastify/helmet';

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

export default fp(
  async (app) => {
    await app.register(helmet, {
      global: true,
      contentSecurityPolicy: {
        // Not helmet's defaults: they add upgrade-insecure-requests, which sends a browser on plain
        // http (embedded mode, http://127.0.0.1:3000) to https for every script, breaking /docs.
        useDefaults: false,
        directives: CSP_DIRECTIVES,
      },
      // The API is never framed (frame-ancestors 'none' above, for browsers without CSP).
      frameguard: { action: 'deny' },
    });
  },
  { name: 'helmet' },
);
