// Tenant registry routes under /v1/registry: resource types, tenants, resources (JSON or
// streamed NDJSON bulk import).
import type { Readable } from 'node:stream';
import type { FastifyRequest } from 'fastify';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, type App } from '../../lib/schemas.ts';
import { JSON_TYPE, NDJSON } from '../../plugins/uploads.ts';
import { validateValue } from '../../plugins/validation.ts';
import { TenantContactView } from './contacts.ts';
import { registryListRoutes } from './lists.ts';
import { detachable, discardRest, jsonRows, NDJSON_MAX_BYTES, ndjsonRows } from './rows.ts';
import { registryService } from './service.ts';
import {
  ResourceIdParams,
  TenantIdParams,
  ImportResult,
  PostResourcesJsonBody,
  PostResourcesNdjsonBody,
  PostTenantsBody,
  PutTypesBody,
  PutTypesBodyShape,
  Resource,
  Tenant,
  TenantUpsertResult,
  TypeList,
} from './schemas.ts';

// 100k tenants with contact data, or 100k resources, as inline JSON.
const JSON_BODY_LIMIT = 64 * 1024 * 1024;

export default async function registryRoutes(app: App) {
  const registry = registryService({ pool: app.db.pool, metrics: app.metrics, downstream: app.downstream });

  app.put(
    '/types',
    {
      config: { auth: ['admin'], audited: true },
      // The body is documented as PutTypesBody but validated here without the adapters: the service
      // checks those and reports every problem of every type at once as a 422.
      validatorCompiler: () => (body: unknown) => {
        try {
          return { value: validateValue(PutTypesBodyShape, body, 'body') };
        } catch (error) {
          return { error: error as Error };
        }
      },
      schema: {
        operationId: 'putResourceTypes',
        tags: ['registry'],
        summary: 'Declare resource types',
        description:
          'Upserts resource types in one transaction. `idPattern` must compile both as a JavaScript and as a PostgreSQL regular expression; `parentType` and `cascadeTo` must name types that exist or are declared in the same body; parent chains may not loop; `adapter` must be a complete adapter of a known kind (an http adapter: an absolute http(s) `baseUrl` without credentials, query or fragment, all four request templates with an allowed method and placeholders (a GET, which has no body, naming the item by {id}), settings in range, no other fields; its host allowed by `BLASTGATE_DOWNSTREAM_ALLOW` on this server, where link-local, metadata and unspecified addresses count only when listed explicitly (`host_not_allowed`, with the list in `allowed`); `signingSecret`, or the default secret when it names none, held by this server (`unresolvable_secret`, naming the variable to set)). Refusals are 422 `INVALID_TYPE_DECLARATION` with every offending field of every type (`field`, `problem`, `value`, `message`, and `allowed` when there is a short answer); nothing is written. A declaration that would point a type at another system (another adapter kind or base URL) while an operation that has started acts on it and holds its resources (running, baking, paused, halted, rolling back, or aborted with a call still out) is refused 409 `ADAPTER_IN_USE`, naming those operations: their next calls would go to the system declared now. Planned and approved operations are refused at their start instead (`ADAPTER_CHANGED`).',
        body: PutTypesBody,
        response: {
          200: TypeList,
          ...errorResponses(400, 401, 403, 415),
          409: errorResponse(409, ERROR_EXAMPLES.adapterInUse),
          422: errorResponse(422, ERROR_EXAMPLES.invalidTypeDeclaration),
        },
      },
    },
    async (req) => registry.declareTypes(req.body, req.principal!.name),
  );

  app.get(
    '/types',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'listResourceTypes',
        tags: ['registry'],
        summary: 'List resource types',
        description: 'Every declared resource type with its ID pattern, parent type, cascade and adapter.',
        response: { 200: TypeList, ...errorResponses(401) },
      },
    },
    async () => ({ items: await registry.listTypes() }),
  );

  registryListRoutes(app);

  app.post(
    '/tenants',
    {
      config: { auth: ['admin'], audited: true },
      bodyLimit: JSON_BODY_LIMIT,
      schema: {
        operationId: 'upsertTenants',
        tags: ['registry'],
        summary: 'Upsert tenants',
        description:
          'Bulk upsert of up to 100,000 tenants in one transaction. Omitted `internal`, `protected` and `contact` keep their stored values. Contact data is stored apart, out of reach of every delete path, and only returned by GET /v1/registry/tenants/{id}/contact (admins) and GET /v1/operations/{id}/tenants (admins, operators). A tenant ID given twice is 422 `DUPLICATE_TENANT_ID`.',
        body: PostTenantsBody,
        response: {
          200: TenantUpsertResult,
          ...errorResponses(400, 401, 403, 413, 415),
          422: errorResponse(422, ERROR_EXAMPLES.duplicateTenantId),
        },
      },
    },
    async (req) => registry.upsertTenants(req.body, req.principal!.name),
  );

  app.get(
    '/tenants/:id',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'getTenant',
        tags: ['registry'],
        summary: 'Get a tenant',
        description:
          "The tenant's flags and its resource counts by type and state. Contact data is not part of it (admins: GET /v1/registry/tenants/{id}/contact).",
        params: TenantIdParams,
        response: { 200: Tenant, ...errorResponses(400, 401), 404: errorResponse(404, ERROR_EXAMPLES.tenantNotFound) },
      },
    },
    async (req) => registry.getTenant(req.params.id),
  );

  app.get(
    '/tenants/:id/contact',
    {
      config: { auth: ['admin'] },
      schema: {
        operationId: 'getTenantContact',
        tags: ['registry'],
        summary: "Get a tenant's contact",
        description:
          "The tenant's contact data, for calling a customer whose data was deleted. Admins only (operators see the contacts of the tenants an operation affects under GET /v1/operations/{id}/tenants); every read is recorded in the audit log (`registry.contact.read`). `contact` is null when none was given. An unknown tenant is 404 `NOT_FOUND` naming the ID. No delete, rollback or import path can change contacts: the database refuses any write that is not the registry's own upsert.",
        params: TenantIdParams,
        response: {
          200: TenantContactView,
          ...errorResponses(400, 401, 403),
          404: errorResponse(404, ERROR_EXAMPLES.tenantNotFound),
        },
      },
    },
    async (req) => registry.getContact(req.params.id, req.principal!.name),
  );

  app.post(
    '/resources',
    {
      config: { auth: ['admin'], audited: true, uploadLimit: NDJSON_MAX_BYTES },
      bodyLimit: JSON_BODY_LIMIT,
      schema: {
        operationId: 'importResources',
        tags: ['registry'],
        summary: 'Import resources (bulk upsert)',
        description: [
          'Upserts resources in one transaction: all rows, or none. Their types (PUT /v1/registry/types) and tenants (POST /v1/registry/tenants) must exist first. Send `application/json` `{ resources: [...] }` (up to 100,000) or stream `application/x-ndjson`, one resource per line (up to 1,000,000 lines, 300 MB; the body is never held whole).',
          'Each row is checked for shape (400 `VALIDATION_FAILED` / `MALFORMED_NDJSON` naming the line), then all rows together for unknown type, unknown tenant, bad state, duplicate ID, ID-pattern mismatch and a parent that is the row itself, exists neither in the upload nor the registry, or is not of the parentType its type declares: any such row makes the import 422 `REGISTRY_REJECTED` with counts per problem and the first 100 offending rows (`line` for NDJSON, `index` for JSON).',
          'Only changed rows are written: re-importing identical data reports `inserted: 0, updated: 0`. Omitted `state`, `protected` and `parentId` keep their stored values; `parentId: null` removes the parent.',
        ].join('\n\n'),
        body: {
          content: { [JSON_TYPE]: { schema: PostResourcesJsonBody }, [NDJSON]: { schema: PostResourcesNdjsonBody } },
        },
        response: {
          200: ImportResult,
          ...errorResponses(400, 401, 403, 413, 415),
          422: errorResponse(422, ERROR_EXAMPLES.registryRejected),
        },
      },
    },
    async (req: FastifyRequest) => {
      const actor = req.principal!.name;
      if (req.mediaType === JSON_TYPE) {
        const body = req.body as { resources: unknown[] };
        return registry.importResources(jsonRows(body.resources), { actor, position: 'index' });
      }
      const raw = req.body as Readable;
      try {
        return await registry.importResources(ndjsonRows(detachable(raw)), { actor, position: 'line' });
      } catch (err) {
        // Refused half-way through the upload: read off the rest so the client gets the answer.
        await discardRest(raw);
        throw err;
      }
    },
  );

  app.get(
    '/resources/:id',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'getResource',
        tags: ['registry'],
        summary: 'Get a resource',
        description: 'One registry resource: type, tenant, parent, state, protection and deletion time.',
        params: ResourceIdParams,
        response: {
          200: Resource,
          ...errorResponses(400, 401),
          404: errorResponse(404, ERROR_EXAMPLES.resourceNotFound),
        },
      },
    },
    async (req) => registry.getResource(req.params.id),
  );
}
