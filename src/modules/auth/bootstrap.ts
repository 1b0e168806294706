// The first admin token. A bootstrap secret (BLASTGATE_ADMIN_TOKEN, or the one embedded mode keeps
// in its data folder) creates an admin token only while no active admin token exists. A token that
// was revoked, expired or rotated out is never brought back by a restart: revoking it is final.
// Once an admin exists, tokens are managed through the API, and the secret is left alone.
import { appendAudit } from '../audit/repository.ts';
import { findBySecretHash, type TokenRepository } from './repository.ts';
import { hashToken } from './secrets.ts';

export const BOOTSTRAP_NAME = 'bootstrap-admin';

export type BootstrapResult =
  /** No active admin token existed: the secret is now the admin token `bootstrap-admin`. */
  | { kind: 'created'; tokenId: string }
  /** The secret is an active admin token already. */
  | { kind: 'active'; tokenId: string }
  /** No secret given, and an active admin token exists: nothing to do. */
  | { kind: 'not_needed' }
  /** A secret was given but cannot be used (`why`); other admin tokens exist, so it is left as it is. */
  | { kind: 'ignored'; why: string };

/** No active admin token exists and none can be bootstrapped: the service would be unmanageable. */
export class BootstrapRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BootstrapRefused';
  }
}

export async function ensureBootstrap(
  deps: { repo: TokenRepository; clock: () => number },
  secret: string | undefined,
): Promise<BootstrapResult> {
  const { repo } = deps;
  const now = new Date(deps.clock());
  return repo.transaction(async (tx) => {
    // Replicas starting at once: one bootstraps, the others find its token.
    await repo.lockAdminSet(tx);
    const admins = await repo.countActiveAdmins(tx, now);
    if (secret === undefined) {
      if (admins > 0) return { kind: 'not_needed' };
      throw new BootstrapRefused('no active admin token exists and no bootstrap secret was given');
    }
    const match = await findBySecretHash(tx, hashToken(secret));
    if (match) {
      const { token: t, retiresAt } = match;
      const why = t.revokedAt
        ? `it belongs to token "${t.name}", revoked at ${t.revokedAt.toISOString()} (revoked tokens are never brought back)`
        : t.expiresAt && t.expiresAt <= now
          ? `it belongs to token "${t.name}", which expired at ${t.expiresAt.toISOString()}`
          : retiresAt && retiresAt <= now
            ? `it is a secret of token "${t.name}" that a rotation retired at ${retiresAt.toISOString()}`
            : t.role !== 'admin'
              ? `it belongs to token "${t.name}", whose role is ${t.role}, not admin`
              : null;
      if (!why) return { kind: 'active', tokenId: t.id };
      if (admins > 0) return { kind: 'ignored', why };
      throw new BootstrapRefused(`no active admin token exists, and the bootstrap secret cannot be used: ${why}`);
    }
    if (admins > 0) {
      return {
        kind: 'ignored',
        why: 'it is not a known token, and admin tokens exist already (it only bootstraps the first admin token)',
      };
    }
    const t = await repo.insert(tx, {
      name: BOOTSTRAP_NAME,
      role: 'admin',
      scope: null,
      expiresAt: null,
      createdBy: null,
      secretHash: hashToken(secret),
    });
    await appendAudit(tx, {
      actor: 'system',
      action: 'token.bootstrap',
      outcome: 'accepted',
      payload: { tokenId: t.id, name: t.name, role: t.role, reason: 'no active admin token existed' },
    });
    return { kind: 'created', tokenId: t.id };
  });
}
