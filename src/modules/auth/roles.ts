// Roles separate who may request, approve, operate and administer. They are not a ladder: an
// approver cannot submit, a requester cannot approve. `admin` may do everything.
import { ForbiddenError } from '../../lib/errors.ts';

export const ROLES = ['viewer', 'requester', 'approver', 'operator', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** What a route accepts: a list of roles, or 'any' authenticated token (reads). */
export type RouteAuth = readonly Role[] | 'any';

/**
 * What a token may submit for deletion: only resources of these types, only of these tenants. An
 * omitted list does not limit; a token without a scope may submit anything its role allows.
 */
export interface TokenScope {
  resourceTypes?: string[];
  tenants?: string[];
}

export interface Principal {
  tokenId: string;
  name: string;
  role: Role;
  scope: TokenScope | null;
}

export function roleAllows(auth: RouteAuth, role: Role): boolean {
  if (role === 'admin' || auth === 'any') return true;
  return auth.includes(role);
}

/** The refusal of a role that `auth` does not accept, naming the roles that are; null when allowed. */
export function roleRefusal(auth: RouteAuth, role: Role, what: string): ForbiddenError | null {
  if (roleAllows(auth, role)) return null;
  return new ForbiddenError(`Role "${role}" may not call ${what}`, {
    role,
    allowedRoles: auth === 'any' ? 'any' : [...new Set(['admin', ...auth])],
  });
}
