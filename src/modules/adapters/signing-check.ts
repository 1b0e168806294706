// Declared http adapters whose calls this process could not sign. A worker started without the
// secret a type's adapter names (or without the default one) started cleanly and then failed every
// item of that type it took, with a halt reason that did not say why (a new-user trial). Types can
// be declared after a worker starts, so this is a warning at start, not a refusal; each item's
// error and the halt reason still name the missing secret.
import type pg from 'pg';
import type { SigningSecrets } from './signing-secrets.ts';

export async function unsignableTypes(
  db: Pick<pg.Pool, 'query'>,
  secrets: SigningSecrets,
): Promise<{ type: string; problem: string }[]> {
  const r = await db.query<{ name: string; secret: string | null }>(
    `SELECT name, adapter->>'signingSecret' AS secret FROM resource_types WHERE adapter->>'kind' = 'http' ORDER BY name`,
  );
  return r.rows.flatMap((t) => {
    const got = secrets.resolve(t.secret ?? undefined);
    return got.ok ? [] : [{ type: t.name, problem: got.problem }];
  });
}
