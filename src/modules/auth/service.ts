// API tokens: random secrets shown once, stored only as SHA-256 hashes. A token may expire, may be
// rotated (a new secret; the old ones keep working for a grace period) and may be scoped. Every
// change commits in one transaction with its audit event.
import { BadRequestError, ConflictError, NotFoundError, UnauthorizedError } from '../../lib/errors.ts';
import { appendAudit } from '../audit/repository.ts';
import { ensureBootstrap } from './bootstrap.ts';
import type { TokenListRow, TokenRepository, TokenRow } from './repository.ts';
import { ROLES, type Principal, type Role, type TokenScope } from './roles.ts';
import { generateToken, hashToken } from './secrets.ts';
import { coalescer } from '../../lib/coalesce.ts';

/**
 * How long the secrets a rotation replaces keep working unless the rotation says otherwise: long
 * enough for every pipeline that holds the old one to be redeployed within a working day.
 */
export const DEFAULT_ROTATION_GRACE_SECONDS = 86_400;
/** Roles a scope means something for: scope limits what a token may submit for deletion. */
const SCOPABLE: readonly Role[] = ['requester'];

type By = Pick<Principal, 'tokenId' | 'name'>;
const iso = (d: Date | null) => d?.toISOString() ?? null;

export interface AuthDeps {
  /** Authentication's only read; may run on a pool of its own. */
  lookup: Pick<TokenRepository, 'findBySecretHash'>;
  repo: TokenRepository;
  clock?: () => number;
}

export function authService(deps: AuthDeps) {
  const { lookup, repo } = deps;
  const clock = deps.clock ?? Date.now;
  // Every request authenticates: concurrent requests with one token share the lookup (one started
  // after each of them arrived, so a revocation committed before a request is always seen).
  const findBySecretHash = coalescer((hash: string) => lookup.findBySecretHash(hash));

  const view = (t: TokenRow) => ({
    id: t.id,
    name: t.name,
    role: t.role,
    scope: t.scope,
    createdAt: t.createdAt.toISOString(),
    expiresAt: iso(t.expiresAt),
  });

  return {
    /** The principal a bearer secret stands for, or a 401 that says why it does not work. */
    async authenticate(secret: string): Promise<Principal> {
      const match = await findBySecretHash(hashToken(secret));
      if (!match || !(ROLES as readonly string[]).includes(match.token.role)) {
        throw new UnauthorizedError('The bearer token is unknown');
      }
      const { token: t, retiresAt } = match;
      const now = clock();
      const who = { tokenId: t.id, name: t.name };
      if (t.revokedAt) {
        throw new UnauthorizedError(
          `The token "${t.name}" was revoked at ${t.revokedAt.toISOString()}; ask an admin for a new one`,
          'TOKEN_REVOKED',
          { ...who, revokedAt: t.revokedAt.toISOString() },
        );
      }
      if (t.expiresAt && t.expiresAt.getTime() <= now) {
        throw new UnauthorizedError(
          `The token "${t.name}" expired at ${t.expiresAt.toISOString()}; ask an admin for a new one`,
          'TOKEN_EXPIRED',
          { ...who, expiredAt: t.expiresAt.toISOString() },
        );
      }
      if (retiresAt && retiresAt.getTime() <= now) {
        throw new UnauthorizedError(
          `This secret of token "${t.name}" was replaced by a rotation; it stopped working at ${retiresAt.toISOString()}. Use the new secret`,
          'TOKEN_ROTATED',
          { ...who, retiredAt: retiresAt.toISOString() },
        );
      }
      return { tokenId: t.id, name: t.name, role: t.role as Role, scope: t.scope };
    },

    async createToken(name: string, role: Role, by: By, opts: { expiresAt?: string | Date; scope?: TokenScope } = {}) {
      const expiresAt = opts.expiresAt === undefined ? null : new Date(opts.expiresAt);
      if (expiresAt && expiresAt.getTime() <= clock()) {
        throw new BadRequestError('EXPIRY_NOT_IN_FUTURE', `expiresAt must be in the future (got ${opts.expiresAt})`, {
          field: 'body.expiresAt',
          expiresAt: opts.expiresAt,
          now: new Date(clock()).toISOString(),
        });
      }
      const scope = opts.scope ?? null;
      if (scope && !SCOPABLE.includes(role)) {
        throw new BadRequestError(
          'SCOPE_NOT_APPLICABLE',
          `scope limits what a token may submit for deletion, so only ${SCOPABLE.join(', ')} tokens take one (got role "${role}")`,
          { field: 'scope', role, scopableRoles: SCOPABLE },
        );
      }
      const secret = generateToken();
      const row = await repo.transaction(async (tx) => {
        // Names are what people read (audit actors, approvals, halt reasons): two tokens in use
        // under one name made a requester look like the approver of their own operation.
        const taken = await repo.nameInUse(tx, name);
        if (taken)
          throw new ConflictError(
            'TOKEN_NAME_TAKEN',
            `A token named "${name}" is in use (${taken.id}, role ${taken.role}); give this one another name, or revoke that one first`,
            { field: 'name', name, tokenId: taken.id },
          );
        const t = await repo.insert(tx, {
          name,
          role,
          scope,
          expiresAt,
          createdBy: by.tokenId,
          secretHash: hashToken(secret),
        });
        await appendAudit(tx, {
          actor: by.name,
          action: 'token.create',
          outcome: 'accepted',
          payload: { tokenId: t.id, name, role, expiresAt: iso(expiresAt), scope, byTokenId: by.tokenId },
        });
        // A typo in a scope is not refused (a token may be made before its tenants are imported),
        // but said: a token scoped to no tenant that exists can submit nothing (a trial's finding).
        const unknownScope = scope ? await repo.unknownInScope(tx, scope) : null;
        return { t, unknownScope };
      });
      return { ...view(row.t), token: secret, ...(row.unknownScope ? { unknownScope: row.unknownScope } : {}) };
    },

    /** A new secret (shown once); the token's older secrets stop working after `graceSeconds`. */
    async rotate(id: string, graceSeconds: number, by: By) {
      const secret = generateToken();
      const now = clock();
      const until = new Date(now + graceSeconds * 1000);
      const row = await repo.transaction(async (tx) => {
        const t = await repo.lock(tx, id);
        if (!t) throw new NotFoundError('Token', id);
        if (t.revokedAt) {
          throw new ConflictError('TOKEN_REVOKED', `Token "${t.name}" was revoked; a revoked token cannot be rotated`, {
            tokenId: id,
            revokedAt: t.revokedAt.toISOString(),
          });
        }
        if (t.expiresAt && t.expiresAt.getTime() <= now) {
          throw new ConflictError('TOKEN_EXPIRED', `Token "${t.name}" has expired; create a new token instead`, {
            tokenId: id,
            expiredAt: t.expiresAt.toISOString(),
          });
        }
        await repo.rotateSecret(tx, id, until, hashToken(secret));
        await appendAudit(tx, {
          actor: by.name,
          action: 'token.rotate',
          outcome: 'accepted',
          payload: { tokenId: id, name: t.name, graceSeconds, previousSecretsValidUntil: until.toISOString() },
        });
        return t;
      });
      return { ...view(row), token: secret, previousSecretsValidUntil: until.toISOString() };
    },

    async revoke(id: string, by: By) {
      const now = new Date(clock());
      return repo.transaction(async (tx) => {
        const t = await repo.lock(tx, id);
        if (!t) throw new NotFoundError('Token', id);
        if (t.revokedAt) return { id, revoked: true }; // nothing changes, so nothing to record
        if (t.role === 'admin') {
          await repo.lockAdminSet(tx);
          if ((await repo.countActiveAdmins(tx, now, id)) === 0) {
            throw new ConflictError(
              'LAST_ADMIN_TOKEN',
              `Token "${t.name}" is the last active admin token; create another admin token before revoking it`,
              { tokenId: id, name: t.name },
            );
          }
        }
        await repo.revoke(tx, id, now);
        await appendAudit(tx, {
          actor: by.name,
          action: 'token.revoke',
          outcome: 'accepted',
          payload: { tokenId: id, name: t.name, role: t.role },
        });
        return { id, revoked: true };
      });
    },

    async list() {
      const rows = await repo.list();
      return rows.map((r) => listView(r, clock()));
    },

    /** The first admin token (see bootstrap.ts): never brings back a revoked, expired or rotated-out one. */
    ensureBootstrap: (secret: string | undefined) => ensureBootstrap({ repo, clock }, secret),
  };
}

function listView(r: TokenListRow, now: number) {
  const status: 'revoked' | 'expired' | 'active' = r.revokedAt
    ? 'revoked'
    : r.expiresAt && r.expiresAt.getTime() <= now
      ? 'expired'
      : 'active';
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    scope: r.scope,
    status,
    createdBy: r.createdBy,
    createdByName: r.createdByName,
    createdAt: r.createdAt.toISOString(),
    expiresAt: iso(r.expiresAt),
    revokedAt: iso(r.revokedAt),
    previousSecretsValidUntil: iso(r.previousSecretsValidUntil),
  };
}

export type AuthService = ReturnType<typeof authService>;
