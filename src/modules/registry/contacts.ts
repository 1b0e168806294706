// Reading tenant contacts: how someone calls a customer whose data was deleted. They are kept in
// their own table that only the registry's upsert may write (prisma/sql/contacts_guard.sql); reads
// are for admins (one tenant) and for admins and operators (the tenants an operation affects).
import { Type } from '@fastify/type-provider-typebox';
import type { Queryable } from '../../lib/sql.ts';

const Contact = Type.Union([Type.Record(Type.String(), Type.Any()), Type.Null()], {
  description: 'The contact data as last upserted through POST /v1/registry/tenants; null when none was given',
});

export const TenantContactView = Type.Object(
  {
    tenantId: Type.String(),
    contact: Contact,
    updatedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description: 'When the contact was last changed; null when there is none',
    }),
  },
  {
    description: "A tenant's contact data (admins only; every read is in the audit log)",
    example: {
      tenantId: 'tn_acme',
      contact: { email: 'ops@acme.example', phone: '+1 555 0100' },
      updatedAt: '2026-11-24T12:00:00.000Z',
    },
  },
);

export interface TenantContact {
  tenantId: string;
  contact: Record<string, unknown> | null;
  updatedAt: string | null;
}

/** The tenant's contact (null when it has none); undefined when the tenant does not exist. */
export async function readContact(db: Queryable, tenantId: string): Promise<TenantContact | undefined> {
  const res = await db.query<{ id: string; contact: Record<string, unknown> | null; updated_at: Date | null }>(
    `SELECT t.id, c.contact, c.updated_at FROM tenants t LEFT JOIN tenant_contacts c ON c.tenant_id = t.id
     WHERE t.id = $1`,
    [tenantId],
  );
  const r = res.rows[0];
  return r && { tenantId: r.id, contact: r.contact, updatedAt: r.updated_at?.toISOString() ?? null };
}

export interface TenantCard {
  name: string | null;
  internal: boolean;
  protected: boolean;
  /** Present only when asked for. */
  contact?: Record<string, unknown> | null;
}

/**
 * Name, flags and, when `withContacts`, the contact of each tenant (one query for a page of them).
 * Contacts are not even read unless asked for.
 */
export async function tenantCards(
  db: Queryable,
  tenantIds: string[],
  withContacts: boolean,
): Promise<Map<string, TenantCard>> {
  const res = await db.query<{
    id: string;
    name: string;
    internal: boolean;
    protected: boolean;
    contact: Record<string, unknown> | null;
  }>(
    `SELECT t.id, t.name, t.internal, t.protected, CASE WHEN $2::bool THEN c.contact END AS contact
     FROM tenants t LEFT JOIN tenant_contacts c ON $2::bool AND c.tenant_id = t.id
     WHERE t.id = ANY($1::text[])`,
    [tenantIds, withContacts],
  );
  return new Map(
    res.rows.map((r) => [
      r.id,
      {
        name: r.name,
        internal: r.internal,
        protected: r.protected,
        ...(withContacts ? { contact: r.contact } : {}),
      },
    ]),
  );
}
