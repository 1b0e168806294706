import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { readSigningSecrets, secretEnvName } from '../../src/modules/adapters/signing-secrets.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const files: Record<string, string> = { '/run/secrets/billing': `${B}\n`, '/run/secrets/short': 'tiny\n' };
const readFile = (p: string) => {
  if (p in files) return files[p]!;
  throw Object.assign(new Error(`ENOENT: no such file, open '${p}'`), { code: 'ENOENT' });
};

describe('signing secrets from the environment', () => {
  it('maps a name to BLASTGATE_SECRET_<NAME> and reads values or _FILE files', () => {
    expect(secretEnvName('apps-prod')).toBe('BLASTGATE_SECRET_APPS_PROD');
    const { secrets, problems } = readSigningSecrets(
      {
        BLASTGATE_SECRET_APPS_PROD: A,
        BLASTGATE_SECRET_BILLING_FILE: '/run/secrets/billing',
        BLASTGATE_SIGNING_SECRET: B,
        OTHER: 'x',
      },
      readFile,
    );
    expect(problems).toEqual([]);
    expect(secrets.names).toEqual(['apps-prod', 'billing']);
    expect(secrets.resolve('apps-prod')).toEqual({ ok: true, secret: A });
    expect(secrets.resolve('billing')).toEqual({ ok: true, secret: B }); // trailing newline dropped
    expect(secrets.resolve(undefined)).toEqual({ ok: true, secret: B });
  });

  it('says which variable to set for a name it does not have, and when there is no default', () => {
    const { secrets } = readSigningSecrets({ BLASTGATE_SECRET_APPS_PROD: A });
    expect(secrets.resolve('billing-eu')).toEqual({
      ok: false,
      problem:
        'signing secret "billing-eu" is not set on this server: set BLASTGATE_SECRET_BILLING_EU or BLASTGATE_SECRET_BILLING_EU_FILE (secrets this server has: "apps-prod")',
    });
    expect(secrets.resolve(undefined)).toMatchObject({
      ok: false,
      problem: expect.stringMatching(/no signingSecret is named and this server has no default secret/),
    });
    expect(secrets.withDefault(B).resolve(undefined)).toEqual({ ok: true, secret: B });
  });

  it('refuses short values, unreadable files, both forms at once and bad names, never echoing a value', () => {
    const { problems } = readSigningSecrets(
      {
        BLASTGATE_SECRET_SHORT: 'tiny-secret-value',
        BLASTGATE_SECRET_GONE_FILE: '/run/secrets/gone',
        BLASTGATE_SECRET_SMALL_FILE: '/run/secrets/short',
        BLASTGATE_SECRET_BOTH: A,
        BLASTGATE_SECRET_BOTH_FILE: '/run/secrets/billing',
        BLASTGATE_SECRET_A__B: A,
        BLASTGATE_SIGNING_SECRET: 'too-short',
      },
      readFile,
    );
    expect(problems).toEqual([
      'BLASTGATE_SECRET_A__B: "a--b" is not a secret name (letters and digits in words joined by single "_", at most 64 characters; e.g. BLASTGATE_SECRET_APPS_PROD)',
      'set BLASTGATE_SECRET_BOTH or BLASTGATE_SECRET_BOTH_FILE, not both',
      'BLASTGATE_SECRET_GONE_FILE: cannot read /run/secrets/gone (ENOENT)',
      'BLASTGATE_SECRET_SHORT must hold at least 32 characters (got 17)',
      'BLASTGATE_SECRET_SMALL_FILE (/run/secrets/short) must hold at least 32 characters (got 4)',
      'BLASTGATE_SIGNING_SECRET must hold at least 32 characters (got 9)',
    ]);
    expect(problems.join('\n')).not.toContain('tiny-secret-value');
  });

  it('serialises and inspects as names only', () => {
    const { secrets } = readSigningSecrets({ BLASTGATE_SECRET_APPS_PROD: A, BLASTGATE_SIGNING_SECRET: B });
    const shown = [JSON.stringify({ config: { secrets } }), inspect(secrets), String(JSON.stringify(secrets))];
    for (const s of shown) {
      expect(s).toContain('apps-prod');
      expect(s).not.toContain(A);
      expect(s).not.toContain(B);
    }
  });
});
