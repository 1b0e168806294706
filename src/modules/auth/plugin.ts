// Authentication and authorisation for every /v1 route. Each /v1 route must declare
// `config.auth` (roles, or 'any' for reads); a route that forgets is refused at start-up, so no
// route can be accidentally public.
import fp from 'fastify-plugin';
import { UnauthorizedError } from '../../lib/errors.ts';
import type { AuthService } from './service.ts';
import { roleRefusal, type Principal, type RouteAuth } from './roles.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: RouteAuth;
    /** Destructive routes: refused requests are written to the audit log too. */
    audited?: boolean;
  }
  interface FastifyRequest {
    principal?: Principal;
  }
}

export default fp<{ auth: AuthService }>(
  async (app, opts) => {
    app.decorateRequest('principal', undefined);
    app.addHook('onRoute', (route) => {
      if (!route.url.startsWith('/v1')) return;
      const auth = route.config?.auth;
      if (!auth) throw new Error(`route ${route.method} ${route.url} declares no config.auth`);
      route.schema = { ...route.schema, security: [{ bearerAuth: [] }] };
    });
    app.addHook('onRequest', async (request) => {
      const auth = request.routeOptions.config.auth;
      if (!auth) return;
      const header = request.headers.authorization;
      const match = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
      if (!match?.[1]) throw new UnauthorizedError();
      // A secret that does not work is a 401 saying why (unknown, revoked, expired, rotated out).
      const principal = await opts.auth.authenticate(match[1]);
      request.principal = principal;
      const refusal = roleRefusal(auth, principal.role, `${request.method} ${request.routeOptions.url}`);
      if (refusal) throw refusal;
    });
  },
  { name: 'auth' },
);
