// How a token's scope is named in a rejection: which token, which types, which tenants, so the
// requester sees at once why an ID was out_of_scope.
import type { Principal } from '../auth/roles.ts';

/** Tenants listed in a stored rejection (the rest are counted); the message names fewer. */
const TENANTS_LISTED = 100;
const TENANTS_IN_MESSAGE = 10;

export interface ScopeReport {
  token: string;
  resourceTypes: string[] | null;
  /** The first tenants of the scope (all of them up to 100); tenantCount says how many it has. */
  tenants: string[] | null;
  tenantCount: number | null;
}

export function scopeReport(p: Pick<Principal, 'name' | 'scope'>): ScopeReport | null {
  if (!p.scope) return null;
  const tenants = p.scope.tenants ?? null;
  return {
    token: p.name,
    resourceTypes: p.scope.resourceTypes ?? null,
    tenants: tenants && tenants.slice(0, TENANTS_LISTED),
    tenantCount: tenants && tenants.length,
  };
}

/** E.g. `Token "team-a-ci" may submit only resources of type app, of tenants t1, t2.` */
export function describeScope(r: ScopeReport): string {
  const parts: string[] = [];
  if (r.resourceTypes) parts.push(`of type ${r.resourceTypes.join(', ')}`);
  if (r.tenants) {
    const shown = r.tenants.slice(0, TENANTS_IN_MESSAGE).join(', ');
    const more = (r.tenantCount ?? 0) - Math.min(r.tenants.length, TENANTS_IN_MESSAGE);
    parts.push(`of tenants ${shown}${more > 0 ? ` and ${more} more` : ''}`);
  }
  return `Token "${r.token}" may submit only resources ${parts.join(', ')}.`;
}
