// GET /v1/registry/tenants and GET /v1/registry/resources: what an operator browses before
// writing an ID list. Filters are validated (an unknown state or type is a 400 naming the
// parameter and what it allows, never an empty page that looks like "nothing there"); pages are
// keyset pages in ID order (`after` = the last ID of the previous page), stable while rows change.
import { Type, type Static } from '@fastify/type-provider-typebox';
import { BadRequestError } from '../../lib/errors.ts';
import { ListFilter, listFilters, nextLink, splitPage, readLimit } from '../../lib/list-query.ts';
import { errorResponses, IdString, PageLinks, type App } from '../../lib/schemas.ts';
import { historyViews } from '../restores/history-views.ts';
import type { Queryable } from '../../lib/sql.ts';
import { RESOURCE_EXAMPLE, RESOURCE_STATES, Resource, TYPE_NAME_PATTERN } from './schemas.ts';
import { purgeAfterView } from './repository.ts';

const MAX_PAGE = 1000;
const DEFAULT_PAGE = 100;

const Limit = Type.Optional(
  Type.Integer({
    minimum: 1,
    maximum: MAX_PAGE,
    default: DEFAULT_PAGE,
    description: `Page size (default ${DEFAULT_PAGE}, at most ${MAX_PAGE})`,
  }),
);
const After = Type.Optional(IdString({ description: 'nextCursor of the previous page: the last ID it listed' }));
const Nullable = <T extends ReturnType<typeof Type.String>>(t: T) => Type.Union([t, Type.Null()]);
const pageOf = <T extends ReturnType<typeof Type.Object>>(item: T, description: string, example: unknown) =>
  Type.Object(
    {
      items: Type.Array(item),
      nextCursor: Nullable(Type.String({ description: 'Pass as `after` for the next page; null: last page' })),
      links: PageLinks,
    },
    { description, example },
  );

export const TenantsQuery = Type.Object(
  {
    internal: Type.Optional(Type.Boolean({ description: 'Only internal (true) or only customer (false) tenants' })),
    protected: Type.Optional(
      Type.Boolean({ description: 'Only protected (true) or only unprotected (false) tenants' }),
    ),
    idPrefix: Type.Optional(IdString({ description: 'Only tenants whose ID starts with this', example: 'tn_' })),
    after: After,
    limit: Limit,
  },
  { additionalProperties: false },
);

const TenantSummary = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    internal: Type.Boolean(),
    protected: Type.Boolean(),
    createdAt: Type.String({ format: 'date-time' }),
    updatedAt: Type.String({ format: 'date-time' }),
    links: Type.Object({ self: Type.String({ description: 'The tenant with its resource counts' }) }),
  },
  { description: 'A tenant in a list (no contact data, no counts)' },
);

const TENANT_EXAMPLE = {
  id: 'tn_acme',
  name: 'Acme',
  internal: false,
  protected: false,
  createdAt: '2026-11-24T12:00:00.000Z',
  updatedAt: '2026-11-24T12:00:00.000Z',
  links: { self: '/v1/registry/tenants/tn_acme' },
};

export const ResourcesQuery = Type.Object(
  {
    type: Type.Optional(
      Type.Array(Type.String({ pattern: TYPE_NAME_PATTERN }), {
        minItems: 1,
        maxItems: 50,
        description:
          'Only resources of one of these declared types. Several: repeat the parameter or separate with commas',
      }),
    ),
    tenantId: Type.Optional(IdString({ description: 'Only resources of this tenant', example: 'tn_example' })),
    state: ListFilter(RESOURCE_STATES, 'Only resources in one of these states'),
    parentId: Type.Optional(
      IdString({ description: 'Only the children of this resource', example: 'example_site_k2m1' }),
    ),
    after: After,
    limit: Limit,
  },
  { additionalProperties: false },
);

const iso = (d: Date | null) => d?.toISOString() ?? null;

async function listTenants(db: Queryable, q: Static<typeof TenantsQuery> & { limit: number }) {
  const res = await db.query<{
    id: string;
    name: string;
    internal: boolean;
    protected: boolean;
    created_at: Date;
    updated_at: Date;
  }>(
    `SELECT id, name, internal, protected, created_at, updated_at FROM tenants
     WHERE ($1::boolean IS NULL OR internal = $1) AND ($2::boolean IS NULL OR protected = $2)
       AND ($3::text IS NULL OR starts_with(id, $3)) AND ($4::text IS NULL OR id > $4)
     ORDER BY id LIMIT $5`,
    [q.internal ?? null, q.protected ?? null, q.idPrefix ?? null, q.after ?? null, q.limit],
  );
  return res.rows.map((r) => ({
    id: r.id,
    name: r.name,
    internal: r.internal,
    protected: r.protected,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    links: { self: `/v1/registry/tenants/${encodeURIComponent(r.id)}` },
  }));
}

/** An undeclared type is a client mistake worth naming (with the declared ones), not an empty page. */
async function checkTypes(db: Queryable, types: string[] | undefined) {
  if (!types) return;
  const declared = (await db.query<{ name: string }>('SELECT name FROM resource_types ORDER BY name')).rows.map(
    (r) => r.name,
  );
  const unknown = [...new Set(types.filter((t) => !declared.includes(t)))];
  if (unknown.length)
    throw new BadRequestError(
      'VALIDATION_FAILED',
      `Invalid querystring.type: ${unknown.map((t) => JSON.stringify(t)).join(', ')} is not a declared resource type`,
      [{ field: 'querystring.type', message: 'must be a declared resource type', unknown, allowed: declared }],
    );
}

async function listResources(db: Queryable, q: Static<typeof ResourcesQuery> & { limit: number }) {
  await checkTypes(db, q.type);
  const res = await db.query<{
    id: string;
    type: string;
    tenant_id: string;
    parent_id: string | null;
    state: string;
    protected: boolean;
    deleted_at: Date | null;
    purge_after: Date | null;
    updated_at: Date;
  }>(
    `SELECT id, type, tenant_id, parent_id, state, protected, deleted_at, purge_after, updated_at FROM resources
     WHERE ($1::text[] IS NULL OR type = ANY($1::text[])) AND ($2::text IS NULL OR tenant_id = $2)
       AND ($3::text[] IS NULL OR state = ANY($3::text[])) AND ($4::text IS NULL OR parent_id = $4)
       AND ($5::text IS NULL OR id > $5)
     ORDER BY id LIMIT $6`,
    [q.type ?? null, q.tenantId ?? null, q.state ?? null, q.parentId ?? null, q.after ?? null, q.limit],
  );
  const ids = res.rows.map((r) => r.id);
  const history = await historyViews(db, ids);
  return res.rows.map((r) => ({
    id: r.id,
    type: r.type,
    tenantId: r.tenant_id,
    parentId: r.parent_id,
    state: r.state,
    protected: r.protected,
    deletedAt: iso(r.deleted_at),
    purgeAfter: purgeAfterView(r.state, r.purge_after),
    updatedAt: r.updated_at.toISOString(),
    ...history(r.id),
  }));
}

/** A page of `rows`, read with readLimit(limit) (list-query.ts splitPage). */
function page<T extends { id: string }>(rows: T[], limit: number, path: string, query: Record<string, unknown>) {
  const { items, last } = splitPage(rows, limit);
  const nextCursor = last?.id ?? null;
  return { items, nextCursor, links: { next: nextLink(path, query, 'after', nextCursor) } };
}

export function registryListRoutes(app: App) {
  app.get(
    '/tenants',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'listTenants',
        tags: ['registry'],
        summary: 'List tenants',
        description:
          'Tenants in ID order, filtered by `internal`, `protected` and `idPrefix`; page with `after` = `nextCursor` of the previous page, or follow `links.next`. No contact data (admins: GET /v1/registry/tenants/{id}/contact).',
        querystring: TenantsQuery,
        response: {
          200: pageOf(TenantSummary, 'Tenants in ID order', {
            items: [TENANT_EXAMPLE],
            nextCursor: 'tn_acme',
            links: { next: '/v1/registry/tenants?internal=false&limit=1&after=tn_acme' },
          }),
          ...errorResponses(400, 401),
        },
      },
    },
    async (req) => {
      const limit = req.query.limit!;
      return page(
        await listTenants(app.db.pool, { ...req.query, limit: readLimit(limit) }),
        limit,
        '/v1/registry/tenants',
        req.query,
      );
    },
  );

  app.get(
    '/resources',
    {
      config: { auth: 'any' },
      preValidation: listFilters({ type: null, state: RESOURCE_STATES }),
      schema: {
        operationId: 'listResources',
        tags: ['registry'],
        summary: 'List resources',
        description:
          'Resources in ID order, filtered by `type` and `state` (each several values: `state=active&state=soft_deleted` or `state=active,soft_deleted`), `tenantId` and `parentId`. An unknown state or an undeclared type is 400 VALIDATION_FAILED naming the parameter and what it allows. Page with `after` = `nextCursor` of the previous page, or follow `links.next`.',
        querystring: ResourcesQuery,
        response: {
          200: pageOf(Resource, 'Resources in ID order', {
            items: [RESOURCE_EXAMPLE],
            nextCursor: 'app_8f3k2m1q',
            links: { next: '/v1/registry/resources?tenantId=tn_acme&state=active&limit=1&after=app_8f3k2m1q' },
          }),
          ...errorResponses(400, 401),
        },
      },
    },
    async (req) => {
      const limit = req.query.limit!;
      const rows = await listResources(app.db.pool, { ...req.query, limit: readLimit(limit) });
      return page(rows, limit, '/v1/registry/resources', req.query);
    },
  );
}
