// API tokens: random secrets shown once, stored only as a SHA-256 hash.
import { createHash, randomBytes } from 'node:crypto';
import { NotFoundError } from '../../lib/errors.ts';
import type { TokenRepository } from './repository.ts';
import { ROLES, type Principal, type Role } from './roles.ts';

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
export const generateToken = () => `bg_${randomBytes(24).toString('base64url')}`;

export function authService(
  repo: Pick<TokenRepository, 'findActiveByHash' | 'create' | 'list' | 'revoke' | 'findById' | 'upsertBootstrap'>,
) {
  return {
    async authenticate(token: string): Promise<Principal | undefined> {
      const row = await repo.findActiveByHash(hashToken(token));
      if (!row || !(ROLES as readonly string[]).includes(row.role)) return undefined;
      return { tokenId: row.id, name: row.name, role: row.role as Role };
    },
    async createToken(name: string, role: Role, createdBy: Principal) {
      const token = generateToken();
      const row = await repo.create({ name, role, tokenHash: hashToken(token), createdBy: createdBy.tokenId });
      return { id: row.id, name: row.name, role: row.role, createdAt: row.createdAt.toISOString(), token };
    },
    /** The bootstrap admin token (from BLASTGATE_ADMIN_TOKEN, or generated and printed once). */
    async ensureBootstrap(token: string) {
      await repo.upsertBootstrap(hashToken(token));
    },
    async list() {
      const rows = await repo.list();
      return rows.map((r) => ({
        id: r.id,
        name: r.name,
        role: r.role,
        createdBy: r.createdBy,
        createdAt: r.createdAt.toISOString(),
        revokedAt: r.revokedAt?.toISOString() ?? null,
      }));
    },
    async revoke(id: string) {
      const existing = await repo.findById(id);
      if (!existing) throw new NotFoundError('Token', id);
      await repo.revoke(id);
      return { id, revoked: true };
    },
  };
}

export type AuthService = ReturnType<typeof authService>;
