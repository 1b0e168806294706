// The live view's files (/ui): served with their content types, cache headers and the CSP they
// work under (own scripts and styles only, no inline script, fetch to this origin only); nothing
// in them loads from elsewhere or keeps the token beyond the tab. And GET /v1/auth/whoami, which
// the page asks to show only the buttons its token may use.
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROLES } from '../../src/modules/auth/roles.ts';
import { buildTestApp, type TestApp } from '../support/app.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t?.close();
});

const directives = (csp: string) =>
  new Map(
    csp
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((d) => d[0])
      .map(([name, ...values]) => [name!, values]),
  );

describe('/ui', () => {
  it('serves the page under a CSP that allows its own script, stylesheet and fetches, and nothing inline', async () => {
    for (const path of ['/ui', '/ui/']) {
      const page = await request(t.app.server).get(path).expect(200);
      expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(page.headers['cache-control']).toBe('no-cache');
      const csp = directives(page.headers['content-security-policy']!);
      expect(csp.get('default-src')).toEqual(["'self'"]);
      expect(csp.get('script-src')).toEqual(["'self'"]);
      expect(csp.get('script-src-attr')).toEqual(["'none'"]);
      expect(csp.get('connect-src')).toEqual(["'self'"]);
      expect(csp.get('style-src')).toContain("'self'");
      expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // every <script> is a file
      expect(page.text).not.toMatch(/\son\w+=/); // no inline event handlers
      expect(page.text).not.toMatch(/https?:\/\//); // nothing from elsewhere
    }
  });

  it('serves its script and stylesheet by content hash, cacheable for good; the page revalidates by ETag', async () => {
    const page = await request(t.app.server).get('/ui').expect(200);
    const script = /<script type="module" src="(\/ui\/app\.js\?v=[0-9a-f]{16})"/.exec(page.text)?.[1];
    const style = /<link rel="stylesheet" href="(\/ui\/app\.css\?v=[0-9a-f]{16})"/.exec(page.text)?.[1];
    expect(script && style, page.text).toBeTruthy();
    for (const [url, type] of [
      [script!, 'text/javascript; charset=utf-8'],
      [style!, 'text/css; charset=utf-8'],
    ] as const) {
      const r = await request(t.app.server).get(url).expect(200);
      expect(r.headers['content-type']).toBe(type);
      expect(r.headers['cache-control']).toBe('public, max-age=31536000, immutable');
      expect(r.headers['x-content-type-options']).toBe('nosniff');
      const text = r.text;
      expect(text).not.toMatch(/https?:\/\//);
      // Another version's name is not cached for good: it may be this server's next version.
      const stale = await request(t.app.server).get(url.replace(/v=\w+/, 'v=0000000000000000')).expect(200);
      expect(stale.headers['cache-control']).toBe('no-cache');
    }
    const again = await request(t.app.server).get('/ui').set('if-none-match', page.headers.etag!).expect(304);
    expect(again.text).toBe('');
  });

  it('keeps the token in sessionStorage only and sends it in the Authorization header, never in a URL', async () => {
    const page = await request(t.app.server).get('/ui').expect(200);
    const script = /src="(\/ui\/app\.js\?v=\w+)"/.exec(page.text)![1]!;
    const js = (await request(t.app.server).get(script).expect(200)).text;
    expect(js).not.toMatch(/localStorage|document\.cookie|innerHTML|eval\(/);
    expect(js).toMatch(/sessionStorage\.setItem\(TOKEN_KEY/);
    expect(js).toMatch(/authorization: `Bearer \$\{token\(\)\}`/);
    // The token field has no name: a form submitted without the script could not put it in a URL.
    expect(page.text).toMatch(/<input id="token" type="password"(?![^>]*\bname=)[^>]*>/);
  });
});

describe('GET /v1/auth/whoami', () => {
  it('tells every role its token id, name, role and scope, and never the secret', async () => {
    for (const role of ROLES) {
      const r = await request(t.app.server).get('/v1/auth/whoami').set('authorization', t.auth(role)).expect(200);
      expect(r.body).toEqual({
        tokenId: expect.any(String),
        name: role === 'admin' ? expect.any(String) : `test-${role}`,
        role,
        scope: null,
      });
      expect(JSON.stringify(r.body)).not.toContain(t.tokens[role]);
    }
  });

  it('answers 401 with the reason without a working token', async () => {
    const none = await request(t.app.server).get('/v1/auth/whoami').expect(401);
    expect(none.body.code).toBeTruthy();
    const wrong = await request(t.app.server).get('/v1/auth/whoami').set('authorization', 'Bearer nope').expect(401);
    expect(wrong.body.code).toBeTruthy();
  });
});
