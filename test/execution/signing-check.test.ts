// A worker says at start which declared http adapters it cannot sign for (their items would fail
// on it): a worker without the signing secret started cleanly and failed every item it took.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unsignableTypes } from '../../src/modules/adapters/signing-check.ts';
import { SigningSecrets } from '../../src/modules/adapters/signing-secrets.ts';
import { buildExecHarness, useHttpAdapter, type ExecHarness } from '../support/execution.ts';
import { seedRegistry } from '../support/seed.ts';

let h: ExecHarness;
beforeAll(async () => {
  h = await buildExecHarness({ workers: 0 });
  await seedRegistry(h.databaseUrl, { sites: 1, appsPerSite: 1 });
});
afterAll(async () => {
  await h?.close();
});

const SECRET = 's'.repeat(40);

describe('unsignableTypes', () => {
  it('names an http type whose secret this process lacks, the default one or a named one', async () => {
    await useHttpAdapter(h);
    expect(await unsignableTypes(h.app.db.pool, new SigningSecrets())).toEqual([
      {
        type: 'app',
        problem: expect.stringMatching(/^no signingSecret is named and this server has no default secret/),
      },
    ]);
    expect(await unsignableTypes(h.app.db.pool, new SigningSecrets(new Map(), SECRET))).toEqual([]);
    await useHttpAdapter(h, true, { signingSecret: 'apps-prod' });
    expect(await unsignableTypes(h.app.db.pool, new SigningSecrets(new Map(), SECRET))).toEqual([
      { type: 'app', problem: expect.stringMatching(/^signing secret "apps-prod" is not set on this server/) },
    ]);
    expect(await unsignableTypes(h.app.db.pool, new SigningSecrets(new Map([['apps-prod', SECRET]])))).toEqual([]);
  });
});
