// GET /v1/operations/{id}/tenants: the tenants an operation affects, from its item ledger, with
// what happened to their items and — for the people who act on an incident — how to reach them.
import { Type } from '@fastify/type-provider-typebox';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { nextLink, splitPage, readLimit } from '../../lib/list-query.ts';
import { errorResponse, errorResponses, IdParams, IdString, PageLinks, type App } from '../../lib/schemas.ts';
import { inTransaction, type Queryable } from '../../lib/sql.ts';
import type { Role } from '../auth/roles.ts';
import { appendAudit } from '../audit/repository.ts';
import { tenantCards } from '../registry/contacts.ts';
import { checkTenantCursor } from './cursors.ts';
import { operationReads } from './repository.ts';
import { RESTORE_ATTEMPTS, shownState } from '../execution/rollback-ledger.ts';

/**
 * Roles that see contacts here: operators pause, roll back and restore, so they are the ones who
 * call the customers an operation hit; admins may do everything. Requesters, approvers and viewers
 * get the same rows without contacts.
 */
export const CONTACT_ROLES: readonly Role[] = ['admin', 'operator'];

const AffectedTenant = Type.Object({
  tenantId: Type.String(),
  name: Type.Union([Type.String(), Type.Null()], { description: 'Null if the tenant is no longer in the registry' }),
  internal: Type.Boolean(),
  protected: Type.Boolean(),
  wave: Type.Integer({ description: "The wave the tenant's items are in" }),
  items: Type.Integer({ description: "The operation's items of this tenant" }),
  states: Type.Record(Type.String(), Type.Integer(), {
    description: 'Those items by ledger state (pending, done, failed, restored, …)',
  }),
  contact: Type.Optional(
    Type.Union([Type.Record(Type.String(), Type.Any()), Type.Null()], {
      description: 'Admins and operators only: the contact data (null when none was given)',
    }),
  ),
});

const AffectedTenantsPage = Type.Object(
  {
    contactsIncluded: Type.Boolean({
      description: 'Whether rows carry `contact`: true for admin and operator tokens',
    }),
    items: Type.Array(AffectedTenant),
    nextCursor: Type.Union([Type.String(), Type.Null()]),
    links: PageLinks,
  },
  {
    description: "The operation's tenants, by tenant ID",
    example: {
      contactsIncluded: true,
      items: [
        {
          tenantId: 'tn_acme',
          name: 'Acme',
          internal: false,
          protected: false,
          wave: 1,
          items: 20,
          states: { done: 20 },
          contact: { email: 'ops@acme.example', phone: '+1 555 0100' },
        },
      ],
      nextCursor: null,
      links: { next: null },
    },
  },
);

interface LedgerTenant {
  tenant_id: string;
  wave: number;
  items: number;
  states: Record<string, number>;
}

/** One page of the operation's tenants, by tenant ID, with item counts per state. */
async function ledgerTenants(db: Queryable, opId: string, cursor: string | null, limit: number, rollingBack: boolean) {
  // A failed restore the running rollback will try again is restoring here too, as in the view.
  const state = shownState('$4', '$5');
  const res = await db.query<LedgerTenant>(
    `WITH per AS (
       SELECT tenant_id, ${state} AS state, count(*)::int AS n, min(wave) AS wave FROM operation_items
       WHERE operation_id = $1 AND ($2::text IS NULL OR tenant_id > $2) GROUP BY 1, 2
     )
     SELECT tenant_id, min(wave)::int AS wave, sum(n)::int AS items, jsonb_object_agg(state, n) AS states
     FROM per GROUP BY tenant_id ORDER BY tenant_id LIMIT $3`,
    [opId, cursor, limit, rollingBack, RESTORE_ATTEMPTS],
  );
  return res.rows;
}

export default async function affectedTenantRoutes(app: App) {
  const reads = operationReads(app.db.pool);

  app.get(
    '/operations/:id/tenants',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'listOperationTenants',
        tags: ['operations'],
        summary: "List an operation's tenants",
        description:
          "Every tenant the operation affects (from its item ledger), paged by tenant ID: name, flags, wave, and the tenant's items by state. For admin and operator tokens each row also carries the tenant's `contact`, so that someone can call the customers an operation hit, and the read is recorded in the audit log (`operation.contacts.read`); other roles get the same rows without it (`contactsIncluded: false`). A rejected operation has no tenants.",
        params: IdParams('Operation ID', 'op_lx2k9a1b2c3d4e5f6'),
        querystring: Type.Object(
          {
            // Optional: the validator fills in the default, so the handler always has one.
            limit: Type.Optional(
              Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'Page size (default 100)' }),
            ),
            cursor: Type.Optional(
              IdString({
                description: 'nextCursor of the previous page (a tenant ID); anything else is 400 INVALID_CURSOR',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: {
          200: AffectedTenantsPage,
          ...errorResponses(401, 404),
          400: errorResponse(400, ERROR_EXAMPLES.invalidTenantCursor),
        },
      },
    },
    async (req) => {
      const op = await reads.get(req.params.id);
      await checkTenantCursor(app.db.pool, op.id, req.query.cursor);
      const principal = req.principal!;
      const withContacts = CONTACT_ROLES.includes(principal.role);
      const limit = req.query.limit!;
      // The extra row of readLimit is dropped before any contact is read (a read is audited with
      // the tenants it returned): `paging.next` is the tenant the next page starts after.
      const paging = { next: null as string | null };
      const page = async (db: Queryable) => {
        const read = splitPage(
          await ledgerTenants(db, op.id, req.query.cursor ?? null, readLimit(limit), op.state === 'rolling_back'),
          limit,
        );
        paging.next = read.last?.tenant_id ?? null;
        const rows = read.items;
        const cards = await tenantCards(
          db,
          rows.map((r) => r.tenant_id),
          withContacts,
        );
        return rows.map((r) => {
          const card = cards.get(r.tenant_id);
          return {
            tenantId: r.tenant_id,
            name: card?.name ?? null,
            internal: card?.internal ?? false,
            protected: card?.protected ?? false,
            wave: r.wave,
            items: r.items,
            states: r.states,
            ...(withContacts ? { contact: card?.contact ?? null } : {}),
          };
        });
      };
      const items = withContacts
        ? // Contacts are personal data: who read which operation's contacts is recorded with the read.
          await inTransaction(app.db.pool, async (client) => {
            const rows = await page(client);
            if (rows.length)
              await appendAudit(client, {
                actor: principal.name,
                action: 'operation.contacts.read',
                outcome: 'info',
                operationId: op.id,
                payload: { role: principal.role, tenants: rows.map((r) => r.tenantId) },
              });
            return rows;
          })
        : await page(app.db.pool);
      const nextCursor = paging.next;
      // The next page's link, as every other list gives it (it had only nextCursor: a trial).
      const path = `/v1/operations/${encodeURIComponent(op.id)}/tenants`;
      return {
        contactsIncluded: withContacts,
        items,
        nextCursor,
        links: { next: nextLink(path, req.query, 'cursor', nextCursor) },
      };
    },
  );
}
