// No route is accidentally public, and every route enforces the roles it declares. The routes are
// not listed by hand: every route the real app registers is recorded (an onRoute hook put on the
// Fastify instance as buildApp creates it), so a route added tomorrow is checked without touching
// this file, hidden ones included.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { RouteOptions } from 'fastify';
import { ROLES, type Role, type RouteAuth } from '../../src/modules/auth/roles.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';

const recorded = vi.hoisted(() => [] as { method: string; url: string; auth: RouteAuth | undefined }[]);

vi.mock('fastify', async (importOriginal) => {
  const mod = await importOriginal<typeof import('fastify')>();
  const original = mod.default;
  const recording = ((opts?: object) => {
    const app = original(opts);
    app.addHook('onRoute', (route: RouteOptions) => {
      const methods: string[] = Array.isArray(route.method) ? route.method : [route.method];
      for (const method of methods) recorded.push({ method, url: route.url, auth: route.config?.auth });
    });
    return app;
  }) as typeof original;
  Object.assign(recording, original);
  return { ...mod, default: recording, fastify: recording };
});

/** Routes outside /v1 that are public on purpose. Anything else outside /v1 fails the test. */
// /ui: the live view's page, script and stylesheet hold no data; the page asks for a token to read any.
const PUBLIC = [
  /^\/healthz$/,
  /^\/readyz$/,
  /^\/metrics$/,
  /^\/openapi\.json$/,
  /^\/docs(\/.*)?$/,
  /^\/ui(\/(app\.(js|css))?)?$/,
];

// Authentication runs in onRequest, before validation, so any syntactically valid value will do.
const PLACEHOLDER = '00000000-0000-4000-8000-000000000000';
const concrete = (url: string) => url.replace(/:[A-Za-z0-9_]+/g, PLACEHOLDER).replace(/\*/g, 'x');

let t: TestApp;
let base: string;
beforeAll(async () => {
  t = await buildTestApp();
  // fetch resolves on the response head, so a streaming route (server-sent events) cannot hang it.
  base = await t.app.listen({ host: '127.0.0.1', port: 0 });
});
afterAll(async () => {
  await t?.close();
});

interface Answer {
  status: number;
  code: string | undefined;
  details: unknown;
}

async function call(method: string, url: string, authorization?: string): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (authorization) headers.authorization = authorization;
  const hasBody = !['GET', 'HEAD', 'DELETE', 'OPTIONS'].includes(method);
  if (hasBody) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${concrete(url)}`, {
    method,
    headers,
    body: hasBody ? '{}' : undefined,
    signal: AbortSignal.timeout(15_000),
  });
  let body: { code?: string; details?: unknown } = {};
  if (method !== 'HEAD' && res.headers.get('content-type')?.includes('application/json'))
    body = (await res.json()) as typeof body;
  else await res.body?.cancel();
  return { status: res.status, code: body.code, details: body.details };
}

const v1Routes = () => recorded.filter((r) => r.url.startsWith('/v1'));
const label = (r: { method: string; url: string }) => `${r.method} ${r.url}`;

describe('route authentication and authorisation', () => {
  it('records the routes of the real app', () => {
    // Guards the recording itself: if buildApp stopped creating its instance through `fastify`,
    // the list below would be empty and every other test here would pass vacuously.
    expect(v1Routes().map(label)).toContain('GET /v1/admin/tokens');
    expect(recorded.map(label)).toContain('GET /healthz');
  });

  it('declares config.auth on every /v1 route', () => {
    expect(
      v1Routes()
        .filter((r) => !r.auth)
        .map(label),
    ).toEqual([]);
  });

  it('has no public route outside /v1 except health, metrics, docs and the live view page', () => {
    const unexpected = recorded.filter((r) => !r.url.startsWith('/v1') && !PUBLIC.some((p) => p.test(r.url)));
    expect(unexpected.map(label)).toEqual([]);
  });

  it('answers 401 UNAUTHORIZED on every /v1 route without a token, with a malformed header and with an unknown token', async () => {
    const problems: string[] = [];
    for (const route of v1Routes()) {
      for (const authorization of [undefined, 'Basic dXNlcjpwYXNz', 'Bearer', 'Bearer wrong']) {
        const r = await call(route.method, route.url, authorization);
        // HEAD answers carry no body, so only the status can be checked there.
        if (r.status !== 401 || (route.method !== 'HEAD' && r.code !== 'UNAUTHORIZED')) {
          problems.push(`${label(route)} with ${authorization ?? 'no authorization'}: ${r.status} ${r.code ?? ''}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('answers 403 FORBIDDEN to every role a /v1 route does not list, and lets the listed roles and admin through', async () => {
    const problems: string[] = [];
    for (const route of v1Routes()) {
      const auth = route.auth;
      if (!auth) continue; // reported by the config.auth test
      for (const role of ROLES) {
        const allowed = role === 'admin' || auth === 'any' || auth.includes(role);
        const r = await call(route.method, route.url, t.auth(role));
        if (allowed) {
          // A handler may refuse for its own reasons (404 for the placeholder ID, 400 for `{}`,
          // a business-rule 403), but never the role check: that 403 names the allowed roles.
          if (r.status === 401 || (r.status === 403 && hasAllowedRoles(r.details)))
            problems.push(`${label(route)} as ${role} (allowed): ${r.status} ${r.code ?? ''}`);
        } else if (r.status !== 403 || (route.method !== 'HEAD' && r.code !== 'FORBIDDEN')) {
          problems.push(`${label(route)} as ${role} (not in ${JSON.stringify(auth)}): ${r.status} ${r.code ?? ''}`);
        } else if (route.method !== 'HEAD') {
          // Each allowed role once (an admin-only route said ["admin","admin"]: a trial).
          const roles = (r.details as { allowedRoles?: unknown }).allowedRoles;
          if (!Array.isArray(roles) || new Set(roles).size !== roles.length || !roles.includes('admin'))
            problems.push(`${label(route)} as ${role}: allowedRoles ${JSON.stringify(roles)}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });

  it('never opens a write to viewers', () => {
    const writes = v1Routes().filter((r) => !['GET', 'HEAD'].includes(r.method));
    const open = writes.filter((r) => r.auth === 'any' || r.auth?.includes('viewer' satisfies Role));
    expect(open.map(label)).toEqual([]);
  });
});

function hasAllowedRoles(details: unknown): boolean {
  return typeof details === 'object' && details !== null && 'allowedRoles' in details;
}
