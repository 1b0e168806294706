// What the registry adapter says about an item it left alone (both adapters word protection alike):
// a refusal names what the registry has now, so an operator can act on it.
import type { AdapterItem } from './types.ts';

/** Why a delete left a resource marked protected after its plan (both adapters say it alike). */
export const PROTECTED_SINCE_PLAN = (id: string) =>
  `${id} is protected in the registry (marked after the plan): not deleted`;
// Not "marked after the plan": the resource may have moved into a tenant protected all along (an
// import while the run goes), and a trial read the old wording as "someone protected it just now".
export const TENANT_PROTECTED_SINCE_PLAN = (id: string, tenantId: string) =>
  `${id} not deleted: its tenant ${tenantId} is protected in the registry, which the plan did not count on (the tenant was marked after the plan, or the resource moved into it; a plan's break-glass approval covers only the tenants protected when it was made)`;
export const DESCENDANT_PROTECTED_SINCE_PLAN = (id: string, via: string) =>
  `${id} not deleted: its cascade would take ${via}, which is protected in the registry now (marked after the plan); nothing was changed`;

export const mismatch = (item: AdapterItem, actual: { type: string | null; tenant: string | null }): string =>
  actual.type === null
    ? `resource ${item.resourceId} is not in the registry`
    : `registry has ${item.resourceId} as type ${actual.type} of tenant ${actual.tenant}, not type ${item.type} of tenant ${item.tenantId}`;
