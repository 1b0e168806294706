// Registry request and response schemas: resource types, tenants, resources, import results.
import { Type, type Static, type TSchema } from '@fastify/type-provider-typebox';
import { IdParams, IdString, MAX_ID_LENGTH, MultilineText, Text } from '../../lib/schemas.ts';
import { AdapterConfig } from '../adapters/schemas.ts';

/** Longest ID, name or type accepted anywhere in the registry (also checked per NDJSON line). */
export { MAX_ID_LENGTH };
/** Rows accepted in one inline JSON body; bigger sets go as a streamed NDJSON upload. */
export const MAX_JSON_ROWS = 100_000;
export const RESOURCE_STATES = ['active', 'soft_deleted', 'purged'] as const;
export type ResourceState = (typeof RESOURCE_STATES)[number];

export const TYPE_NAME_PATTERN = '^[a-z][a-z0-9_]{0,39}$';
const TypeName = Type.String({ pattern: TYPE_NAME_PATTERN, description: 'Resource type name', example: 'app' });
const Id = (description: string, example: string) => IdString({ description, example });
const Timestamp = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const ResourceTypeInput = Type.Object(
  {
    name: TypeName,
    idPattern: Type.Optional(
      Text({
        minLength: 1,
        maxLength: 500,
        description:
          'Regular expression every ID of this type must match; valid both in JavaScript and in PostgreSQL (checked with `~`, i.e. unanchored: write ^…$)',
        example: '^app_[a-z0-9]{8,}$',
      }),
    ),
    parentType: Type.Optional(
      Type.String({
        pattern: TYPE_NAME_PATTERN,
        description:
          'Type of the parent resource (an app lives in a site); must already exist or be declared in the same body',
      }),
    ),
    cascadeTo: Type.Optional(
      Type.Array(Type.String({ pattern: TYPE_NAME_PATTERN }), {
        maxItems: 50,
        uniqueItems: true,
        description: 'Child types a delete of this type takes with it',
      }),
    ),
    adapter: Type.Optional(AdapterConfig),
    retentionDays: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 3650,
        description:
          'Days a soft-deleted resource of this type is kept before a purge may hard-delete it (omitted: the policy default retentionDays)',
        example: 30,
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'A resource type declaration; a PUT replaces the whole declaration of each named type',
  },
);

export const PutTypesBody = Type.Object(
  {
    types: Type.Array(ResourceTypeInput, { minItems: 1, maxItems: 1000 }),
  },
  {
    additionalProperties: false,
    description: 'Resource types to declare (upserted together, all or nothing)',
    // Types of their own: executed from Swagger UI, an example naming a real type (app) would
    // replace its declaration, adapter included.
    example: {
      types: [
        { name: 'example_site', idPattern: '^example_site_[a-z0-9]+$', cascadeTo: ['example_app'] },
        {
          name: 'example_app',
          idPattern: '^example_app_[a-z0-9]+$',
          parentType: 'example_site',
          adapter: { kind: 'registry' },
        },
      ],
    },
  },
);
export type PutTypesBody = Static<typeof PutTypesBody>;
export type ResourceTypeInput = Static<typeof ResourceTypeInput>;

/**
 * What the route itself validates: PutTypesBody with `adapter` left to the registry service, which
 * checks every adapter of the body by the rules of AdapterConfig and answers all their problems
 * together with the other declaration problems (422 INVALID_TYPE_DECLARATION), instead of the
 * first one as a 400. The OpenAPI document shows PutTypesBody, i.e. exactly what is accepted.
 */
export const PutTypesBodyShape = Type.Object(
  {
    types: Type.Array(
      Type.Object(
        { ...ResourceTypeInput.properties, adapter: Type.Optional(Type.Unknown()) },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 1000 },
    ),
  },
  { additionalProperties: false },
);
/** A declaration whose adapter has not been checked yet. */
export type UncheckedTypeInput = Omit<ResourceTypeInput, 'adapter'> & { adapter?: unknown };

export const ResourceType = Type.Object(
  {
    name: Type.String(),
    idPattern: Nullable(Type.String()),
    parentType: Nullable(Type.String()),
    cascadeTo: Type.Array(Type.String()),
    adapter: Type.Object({ kind: Type.String() }, { additionalProperties: true }),
    retentionDays: Nullable(Type.Integer({ description: 'Retention of this type in days; null: the policy default' })),
    createdAt: Timestamp,
    updatedAt: Timestamp,
  },
  { description: 'A declared resource type' },
);
export type ResourceType = Static<typeof ResourceType>;

export const TypeList = Type.Object(
  { items: Type.Array(ResourceType) },
  {
    description: 'Resource types, by name',
    example: {
      items: [
        {
          name: 'app',
          idPattern: '^app_[a-z0-9]+$',
          parentType: 'site',
          cascadeTo: [],
          adapter: { kind: 'registry' },
          retentionDays: null,
          createdAt: '2026-11-24T12:00:00.000Z',
          updatedAt: '2026-11-24T12:00:00.000Z',
        },
      ],
    },
  },
);

// Contact data is free-form but shallow: fields of text, numbers, booleans or null, or a list or
// object of those (phones, an address). Bounded so that it can be stored, hashed and compared.
const ContactScalar = Type.Union([MultilineText({ maxLength: 2000 }), Type.Number(), Type.Boolean(), Type.Null()]);
const ContactField = Text({ minLength: 1, maxLength: 100, description: 'Field name' });
const Contact = Type.Object(
  {},
  {
    additionalProperties: Type.Union([
      ...ContactScalar.anyOf,
      Type.Array(ContactScalar, { maxItems: 50 }),
      Type.Object({}, { additionalProperties: ContactScalar, propertyNames: ContactField, maxProperties: 50 }),
    ]),
    propertyNames: ContactField,
    maxProperties: 50,
    description:
      'Contact data; stored apart from the registry, where no delete path can change it, never returned by registry reads, and readable by admins only (GET /v1/registry/tenants/{id}/contact). Omitted: unchanged. Up to 50 fields of text (up to 2000 characters, may span lines), numbers, booleans or null, or a list or object (up to 50 entries) of those',
    example: { email: 'ops@acme.example', phones: ['+41 44 000 00 00'] },
  },
);

export const TenantInput = Type.Object(
  {
    id: Id('Tenant ID', 'tn_acme'),
    name: Text({ minLength: 1, maxLength: MAX_ID_LENGTH, description: 'Display name' }),
    internal: Type.Optional(
      Type.Boolean({
        description: 'Internal tenants go in the first wave. Omitted: unchanged (false for a new tenant)',
      }),
    ),
    protected: Type.Optional(
      Type.Boolean({ description: 'Never deleted without break-glass. Omitted: unchanged (false for a new tenant)' }),
    ),
    contact: Type.Optional(Contact),
  },
  { additionalProperties: false, description: 'A tenant' },
);
export type TenantInput = Static<typeof TenantInput>;

export const PostTenantsBody = Type.Object(
  {
    tenants: Type.Array(TenantInput, { minItems: 1, maxItems: MAX_JSON_ROWS }),
  },
  {
    additionalProperties: false,
    description: 'Tenants to upsert (all or nothing)',
    // A tenant of its own, flags and contact omitted: executed from Swagger UI, an example naming a
    // real tenant with protected: false would lift its protection.
    example: { tenants: [{ id: 'tn_example', name: 'Example tenant (from the API docs)' }] },
  },
);
export type PostTenantsBody = Static<typeof PostTenantsBody>;

/** Changed resources a live operation holds (registry imports and tenant upserts say so). */
const HeldChange = Type.Object(
  {
    count: Type.Integer({ description: 'How many changed resources a live operation holds' }),
    resources: Type.Array(
      Type.Object({
        id: Type.String(),
        operationId: Type.String({ description: 'The live operation that holds it' }),
        operationState: Type.String({ description: 'Its state at the time of the change' }),
        under: Type.Optional(
          Type.String({
            description:
              'Not held itself: the import put it (new, or moved) under this parent, which the operation holds. When the cascade of the operation would take it, that cascade was planned without it: a plan not started yet will not start (409 PLAN_STALE), and a running one does not delete that parent (its item fails naming the new child).',
          }),
        ),
      }),
      { description: 'The first 20 (an import: in upload order; a tenant upsert: by resource ID)' },
    ),
  },
  {
    description:
      'Present when the import changed resources (type, tenant, parent, state or protection) that a live operation holds, or put resources under a parent one holds (`under`): it was planned against what they were. One not started yet will not start (409 PLAN_STALE names them: abort it and plan again). A running one leaves alone what is protected now, and the registry adapter fails an item whose resource moved to another tenant or type; other changes do not stop it: look at it, and pause or abort it if they matter.',
  },
);

export const TenantUpsertResult = Type.Object(
  {
    received: Type.Integer(),
    inserted: Type.Integer(),
    updated: Type.Integer(),
    unchanged: Type.Integer(),
    contactsChanged: Type.Integer({ description: 'Contacts inserted or changed' }),
    held: Type.Optional({
      ...HeldChange,
      description:
        'Present when the upsert protected tenants whose resources a live operation holds (not protected when it was planned): one not started yet will not start (409 PLAN_STALE), a running one leaves those resources alone (their items fail saying why).',
    }),
  },
  {
    description: 'What the upsert changed',
    example: { received: 2, inserted: 1, updated: 0, unchanged: 1, contactsChanged: 1 },
  },
);

export const Tenant = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    internal: Type.Boolean(),
    protected: Type.Boolean(),
    createdAt: Timestamp,
    updatedAt: Timestamp,
    resourceTotal: Type.Integer({ description: 'All resources of the tenant, in any state' }),
    resourceCounts: Type.Array(Type.Object({ type: Type.String(), state: Type.String(), count: Type.Integer() }), {
      description: 'Resources by type and state',
    }),
  },
  {
    description: 'A tenant with its resource counts (never its contact data)',
    example: {
      id: 'tn_acme',
      name: 'Acme',
      internal: false,
      protected: false,
      createdAt: '2026-11-24T12:00:00.000Z',
      updatedAt: '2026-11-24T12:00:00.000Z',
      resourceTotal: 3,
      resourceCounts: [
        { type: 'app', state: 'active', count: 2 },
        { type: 'site', state: 'active', count: 1 },
      ],
    },
  },
);

export const ResourceInput = Type.Object(
  {
    id: Id("Resource ID (must match the type's idPattern)", 'app_8f3k2m1q'),
    type: IdString({ description: 'A declared resource type', example: 'app' }),
    tenantId: Id('Owning tenant (must exist)', 'tn_acme'),
    parentId: Type.Optional(
      Type.Union([
        Id('Parent resource ID. Omitted: unchanged (none for a new resource); null: no parent', 'site_k2m1'),
        Type.Null(),
      ]),
    ),
    state: Type.Optional(
      Type.Union(
        RESOURCE_STATES.map((s) => Type.Literal(s)),
        { description: 'Omitted: unchanged (active for a new resource)' },
      ),
    ),
    protected: Type.Optional(
      Type.Boolean({ description: 'Never deleted without break-glass. Omitted: unchanged (false for a new resource)' }),
    ),
  },
  { additionalProperties: false, description: 'A resource; one of these per NDJSON line in a streamed import' },
);
export type ResourceInput = Static<typeof ResourceInput>;

export const PostResourcesJsonBody = Type.Object(
  {
    resources: Type.Array(ResourceInput, { minItems: 1, maxItems: MAX_JSON_ROWS }),
  },
  {
    additionalProperties: false,
    description: 'Resources to upsert (all or nothing). For more than 100k rows stream application/x-ndjson instead.',
    // The example tenant's and types' own resources (PostTenantsBody, PutTypesBody): executed from
    // Swagger UI after those two, it imports what the submission examples then plan against, and
    // it can never reactivate or unprotect a real resource.
    example: {
      resources: [
        { id: 'example_site_k2m1', type: 'example_site', tenantId: 'tn_example' },
        {
          id: 'example_app_9f2c1',
          type: 'example_app',
          tenantId: 'tn_example',
          parentId: 'example_site_k2m1',
          state: 'active',
          protected: false,
        },
        { id: 'example_app_9f2c2', type: 'example_app', tenantId: 'tn_example', parentId: 'example_site_k2m1' },
      ],
    },
  },
);
export type PostResourcesJsonBody = Static<typeof PostResourcesJsonBody>;

/**
 * The NDJSON variant is streamed to the handler untouched: an empty schema (no `type`) so that
 * Fastify's per-content-type validation accepts the stream while the OpenAPI document still shows it.
 */
export const PostResourcesNdjsonBody = {
  // A string: Swagger UI sends the example as typed only then (without, it sent it as one JSON
  // string, which the route refused: a trial).
  type: 'string',
  description:
    'One resource object per line (same fields as in the JSON variant), up to 1,000,000 lines / 300 MB, streamed',
  example:
    '{"id":"example_site_k2m1","type":"example_site","tenantId":"tn_example"}\n' +
    '{"id":"example_app_9f2c1","type":"example_app","tenantId":"tn_example","parentId":"example_site_k2m1"}\n' +
    '{"id":"example_app_9f2c2","type":"example_app","tenantId":"tn_example","parentId":"example_site_k2m1"}\n',
};

export const ImportResult = Type.Object(
  {
    received: Type.Integer({ description: 'Rows in the upload' }),
    inserted: Type.Integer({ description: 'New resources' }),
    updated: Type.Integer({ description: 'Existing resources that changed' }),
    unchanged: Type.Integer({ description: 'Existing resources already identical' }),
    held: Type.Optional(HeldChange),
  },
  {
    description: 'What the import changed',
    example: { received: 1000000, inserted: 1000, updated: 10, unchanged: 998990 },
  },
);
export type ImportResult = Static<typeof ImportResult>;

/** One resource as the API shows it (also the list route's example). */
export const RESOURCE_EXAMPLE = {
  id: 'app_8f3k2m1q',
  type: 'app',
  tenantId: 'tn_acme',
  parentId: 'site_k2m1',
  state: 'active',
  protected: false,
  deletedAt: null,
  purgeAfter: null,
  updatedAt: '2026-11-24T12:00:00.000Z',
  deletedBy: null,
  uncertainDelete: null,
  uncertainPurge: null,
  uncertainRestore: null,
};

export const Resource = Type.Object(
  {
    id: Type.String(),
    type: Type.String(),
    tenantId: Type.String(),
    parentId: Nullable(Type.String()),
    state: Type.String({ description: 'active | soft_deleted | purged' }),
    protected: Type.Boolean(),
    deletedAt: Nullable(Timestamp),
    purgeAfter: Nullable(
      Type.String({
        format: 'date-time',
        description:
          'Soft-deleted by an operation: when its retention ends and a purge may hard-delete it; null once purged',
      }),
    ),
    updatedAt: Timestamp,
    deletedBy: Nullable(
      Type.Object(
        {
          operationId: Type.String(),
          mode: Type.Union([Type.Literal('soft'), Type.Literal('hard')]),
          at: { ...Timestamp, description: 'When Blastgate stored its snapshot, right before its delete call' },
        },
        {
          additionalProperties: false,
          description:
            "Blastgate's delete of this resource that stands: its latest act on it is this operation's delete, not rolled back or restored since, or the purge or erasure that hard-deleted it (mode hard) (nor, for a type with an HTTP adapter, overtaken by an import that changed the row). An HTTP adapter's delete leaves `state` as the owning system says it is, so this is where it shows; null when none stands",
        },
      ),
    ),
    uncertainDelete: Nullable(
      Type.Object(
        {
          operationId: Type.String(),
          at: { ...Timestamp, description: 'When Blastgate stored its snapshot, right before its delete call' },
        },
        {
          additionalProperties: false,
          description:
            "A delete of this resource by an ended operation whose outcome is unknown: a try that may have applied (a timeout, a 5xx), then the item failed (and a rollback of it, if one ran, did not restore it); nothing of Blastgate's took effect on it since. Check the resource in its own system; a rollback of that operation restores it from its snapshot, a restore refuses it (uncertain). Null otherwise",
        },
      ),
    ),
    uncertainRestore: Nullable(
      Type.Object(
        {
          operationId: Type.String({
            description: 'The restore operation, or the delete whose rollback sent the restore',
          }),
          at: {
            ...Timestamp,
            description:
              "When Blastgate stored the restore's snapshot (a restore operation's, just before its call), or recorded the rollback's restore failed",
          },
        },
        {
          additionalProperties: false,
          description:
            "A restore of this resource by an ended operation (a restore, or a delete's rollback) whose call went out and that did not end restored: a 5xx after its system applied it, a timeout, an abort with the call out. It may be live again although deletedBy says its delete stands: check it in its own system. A purge of a tenant, an operation or everything due leaves it out, a list of IDs refuses it (restore_uncertain); a restore of it settles it. Null otherwise",
        },
      ),
    ),
    uncertainPurge: Nullable(
      Type.Object(
        {
          operationId: Type.String(),
          at: { ...Timestamp, description: 'When Blastgate stored its snapshot, right before its hard delete call' },
        },
        {
          additionalProperties: false,
          description:
            "A purge or a compliance erasure (a hard delete) of this resource by an ended operation whose outcome is unknown: a try that may have applied (a timeout, a 5xx), then the item failed; nothing of Blastgate's took effect on it since. It may be gone for good in its own system although the registry still reads soft_deleted (or active, for an erasure): check it there. A later purge that takes it tries again (with the same outcome if it went through); a restore may fail. Null otherwise",
        },
      ),
    ),
  },
  {
    description: 'A registry resource',
    example: RESOURCE_EXAMPLE,
  },
);
export type Resource = Static<typeof Resource>;

// Path examples of the registry examples' own rows (POST /v1/registry/resources): Swagger UI's
// "Try it out" then finds them, and a tenant's example is a tenant ID, not an app's.
export const ResourceIdParams = IdParams('Resource ID', 'example_app_9f2c1');
export const TenantIdParams = IdParams('Tenant ID', 'tn_example');
