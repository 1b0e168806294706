// Declaring an http adapter is checked against this server's downstream policy: the baseUrl host
// must be allowed by BLASTGATE_DOWNSTREAM_ALLOW (link-local, metadata and unspecified addresses only
// when listed explicitly), and the signing secret it names must be one this server holds. Refusals
// are 422s naming the field, the allowlist and the variable to set; nothing is stored, and no
// secret value is ever stored or shown.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { allowlistOf } from '../../src/modules/adapters/host-allowlist.ts';
import { SigningSecrets } from '../../src/modules/adapters/signing-secrets.ts';
import { APPS_PROD_SECRET, SECRET, buildTestApp, type TestApp } from '../support/app.ts';
import { query } from '../support/seed.ts';

let t: TestApp;
/** A server with no default secret (BLASTGATE_SIGNING_SECRET unset) and an empty allowlist. */
let bare: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  bare = await buildTestApp({ downstream: { allow: allowlistOf([]), secrets: new SigningSecrets() } });
});
afterAll(async () => {
  await t?.close();
  await bare?.close();
});

const http = (over: Record<string, unknown> = {}) => ({
  kind: 'http',
  baseUrl: 'https://apps.internal/api',
  snapshot: 'GET /apps/{id}',
  softDelete: 'POST /apps/{id}/soft-delete',
  restore: 'POST /apps/{id}/restore',
  hardDelete: 'DELETE /apps/{id}',
  ...over,
});
const put = (app: TestApp, adapters: unknown[], prefix: string) =>
  request(app.app.server)
    .put('/v1/registry/types')
    .set('authorization', app.auth('admin'))
    .send({ types: adapters.map((adapter, i) => ({ name: `${prefix}_${i}`, adapter })) });
const storedNames = async (app: TestApp, prefix: string) =>
  (
    await query<{ name: string }>(app.databaseUrl, 'SELECT name FROM resource_types WHERE name LIKE $1', [
      `${prefix}_%`,
    ])
  ).map((r) => r.name);

describe('PUT /v1/registry/types: the adapter host', () => {
  it('refuses a host outside BLASTGATE_DOWNSTREAM_ALLOW, naming the field and the list', async () => {
    const r = await put(t, [http({ baseUrl: 'https://billing.example.com/v1' })], 'far');
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.code).toBe('INVALID_TYPE_DECLARATION');
    expect(r.body.message).toBe(
      'types[0].adapter.baseUrl: baseUrl host billing.example.com is not in BLASTGATE_DOWNSTREAM_ALLOW (BLASTGATE_DOWNSTREAM_ALLOW lists: 127.0.0.1, localhost, *.internal)',
    );
    expect(r.body.details).toEqual([
      {
        field: 'types[0].adapter.baseUrl',
        problem: 'host_not_allowed',
        value: 'https://billing.example.com/v1',
        message: expect.stringContaining('billing.example.com is not in BLASTGATE_DOWNSTREAM_ALLOW'),
        allowed: ['127.0.0.1', 'localhost', '*.internal'],
      },
    ]);
    expect(await storedNames(t, 'far')).toEqual([]);
  });

  it('refuses metadata, link-local and unspecified addresses even where a wildcard would match', async () => {
    const hosts = [
      'http://169.254.169.254/latest',
      'http://[::ffff:169.254.169.254]',
      'http://metadata.google.internal/computeMetadata/v1', // matches *.internal, still refused
      'http://0.0.0.0:8080',
      'http://[fe80::1]:8080',
    ];
    const r = await put(
      t,
      hosts.map((baseUrl) => http({ baseUrl })),
      'meta',
    );
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.details).toHaveLength(hosts.length);
    for (const [i, d] of (r.body.details as { field: string; problem: string; message: string }[]).entries()) {
      expect(d.field).toBe(`types[${i}].adapter.baseUrl`);
      expect(d.problem).toBe('host_not_allowed');
      expect(d.message).toMatch(/never allowed unless BLASTGATE_DOWNSTREAM_ALLOW lists it explicitly/);
    }
    expect(r.body.details[0].message).toMatch(
      /^baseUrl host 169\.254\.169\.254 is a link-local address \(cloud metadata endpoints answer there\)/,
    );
    expect(await storedNames(t, 'meta')).toEqual([]);
  });

  it('says when the allowlist is empty (a server outside embedded mode that was told no host)', async () => {
    const r = await put(bare, [http({ baseUrl: 'http://127.0.0.1:8080', signingSecret: 'apps-prod' })], 'empty');
    expect(r.status).toBe(422);
    expect(r.body.details[0]).toMatchObject({
      field: 'types[0].adapter.baseUrl',
      problem: 'host_not_allowed',
      message:
        'baseUrl host 127.0.0.1 is not in BLASTGATE_DOWNSTREAM_ALLOW (BLASTGATE_DOWNSTREAM_ALLOW is empty on this server)',
      allowed: [],
    });
  });
});

describe('PUT /v1/registry/types: the signing secret', () => {
  it('stores the name of a secret this server holds, never its value', async () => {
    const r = await put(t, [http({ signingSecret: 'apps-prod' }), http()], 'named');
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    const rows = await query<{ adapter: unknown }>(
      t.databaseUrl,
      "SELECT adapter FROM resource_types WHERE name LIKE 'named_%'",
    );
    expect(rows.map((x) => x.adapter)).toEqual(
      expect.arrayContaining([expect.objectContaining({ signingSecret: 'apps-prod' })]),
    );
    const everything =
      JSON.stringify(await query(t.databaseUrl, 'SELECT * FROM resource_types')) +
      JSON.stringify(await query(t.databaseUrl, 'SELECT payload FROM audit_events'));
    expect(everything).not.toContain(APPS_PROD_SECRET);
    expect(everything).not.toContain(SECRET);
  });

  it('refuses a secret name the server cannot resolve, naming the variable to set and the names it has', async () => {
    const r = await put(t, [http({ signingSecret: 'billing-eu' })], 'unknown_secret');
    expect(r.status, JSON.stringify(r.body)).toBe(422);
    expect(r.body.details).toEqual([
      {
        field: 'types[0].adapter.signingSecret',
        problem: 'unresolvable_secret',
        value: 'billing-eu',
        message:
          'signing secret "billing-eu" is not set on this server: set BLASTGATE_SECRET_BILLING_EU or BLASTGATE_SECRET_BILLING_EU_FILE (secrets this server has: "apps-prod")',
        allowed: ['apps-prod'],
      },
    ]);
    expect(await storedNames(t, 'unknown_secret')).toEqual([]);
  });

  it('refuses an adapter that names no secret on a server without a default one', async () => {
    const r = await put(bare, [http({ baseUrl: 'https://apps.internal' })], 'nodefault');
    expect(r.status).toBe(422);
    expect(r.body.details).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          field: 'types[0].adapter.signingSecret',
          problem: 'unresolvable_secret',
          message: expect.stringMatching(
            /^no signingSecret is named and this server has no default secret: .* set BLASTGATE_SIGNING_SECRET/,
          ),
        }),
      ]),
    );
  });

  it('refuses a malformed secret name before looking it up', async () => {
    const r = await put(
      t,
      [http({ signingSecret: 'Apps_Prod' }), http({ signingSecret: 'apps-prod-file' })],
      'badname',
    );
    expect(r.status).toBe(422);
    expect(r.body.details).toEqual([
      expect.objectContaining({
        field: 'types[0].adapter.signingSecret',
        problem: 'invalid_value',
        value: 'Apps_Prod',
      }),
      expect.objectContaining({ field: 'types[1].adapter.signingSecret', problem: 'invalid_value' }),
    ]);
    expect(r.body.details[0].message).toMatch(/lower-case letters and digits in words joined by single hyphens/);
  });
});
