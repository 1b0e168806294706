// The adapter config stored on a resource type (resource_types.adapter, jsonb). One schema per
// kind, discriminated by `kind`; the union is what the registry API accepts.
import { Type, type Static } from '@fastify/type-provider-typebox';

// "METHOD /path" where the path may hold {id} {tenantId} {type} {operationId}. Checking the
// placeholders here turns a typo ({resourceId}) into a 400 when the type is registered instead of
// a request to a literal "/apps/{resourceId}" in the middle of a rollout.
const TEMPLATE = '^(GET|POST|PUT|PATCH|DELETE) /([^\\s{}]|\\{(id|tenantId|type|operationId)\\})*$';
// A probe is about a tenant, not an item: only {tenantId} can be filled in.
const PROBE_TEMPLATE = '^(GET|POST|PUT|PATCH|DELETE) /([^\\s{}]|\\{tenantId\\})*$';

const RequestTemplate = (description: string, example: string) =>
  Type.String({ pattern: TEMPLATE, maxLength: 2000, description, example });

export const HttpAdapterConfig = Type.Object(
  {
    kind: Type.Literal('http'),
    baseUrl: Type.String({
      pattern: '^https?://[^\\s/?#]+(/[^\\s?#]*)?$',
      maxLength: 2000,
      description: 'Scheme, host and optional base path of the owning system; templates are appended',
      example: 'http://127.0.0.1:8080',
    }),
    snapshot: RequestTemplate(
      'Reads one resource; the 2xx JSON body is stored as its snapshot before any destructive call',
      'GET /apps/{id}',
    ),
    softDelete: RequestTemplate('Marks one resource deleted, reversibly', 'POST /apps/{id}/soft-delete'),
    restore: RequestTemplate(
      'Undoes a soft delete; the request body carries the stored snapshot',
      'POST /apps/{id}/restore',
    ),
    hardDelete: RequestTemplate(
      'Purges one resource for good (retention passed or compliance erasure)',
      'DELETE /apps/{id}',
    ),
    probe: Type.Optional(
      Type.String({
        pattern: PROBE_TEMPLATE,
        maxLength: 2000,
        description:
          'Health of one tenant: 2xx (optionally {"healthy":true}) is healthy; {"healthy":false} or 5xx is unhealthy. Without it analysis is inconclusive when the halt policy requires a probe',
        example: 'GET /tenants/{tenantId}/health',
      }),
    ),
    timeoutMs: Type.Optional(
      Type.Integer({
        minimum: 10,
        maximum: 120_000,
        default: 2_000,
        description: 'Deadline of one attempt, connection to last byte',
      }),
    ),
    retries: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 10,
        default: 3,
        description:
          'Extra attempts after a timeout, connection error, 408, 429 or 5xx; always with the same Idempotency-Key',
      }),
    ),
    retryBaseMs: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 60_000,
        default: 50,
        description: 'First backoff; doubles per attempt, with jitter',
      }),
    ),
  },
  {
    additionalProperties: false,
    description:
      'Acts on the owning system over HTTP with signed requests (X-Blastgate-Signature) and an Idempotency-Key on every destructive call',
  },
);

export const RegistryAdapterConfig = Type.Object(
  { kind: Type.Literal('registry') },
  {
    additionalProperties: false,
    description: "Acts on the resources kept in Blastgate's own registry (the resources table)",
  },
);

export const AdapterConfig = Type.Union([HttpAdapterConfig, RegistryAdapterConfig], {
  $id: 'AdapterConfig',
  description:
    'How Blastgate acts on the system that owns a resource type: snapshot, soft delete, restore, hard delete and a health probe',
  example: {
    kind: 'http',
    baseUrl: 'http://127.0.0.1:8080',
    snapshot: 'GET /apps/{id}',
    softDelete: 'POST /apps/{id}/soft-delete',
    restore: 'POST /apps/{id}/restore',
    hardDelete: 'DELETE /apps/{id}',
    probe: 'GET /tenants/{tenantId}/health',
    timeoutMs: 2000,
    retries: 3,
    retryBaseMs: 50,
  },
  default: { kind: 'registry' },
});

export type HttpAdapterConfig = Static<typeof HttpAdapterConfig>;
export type RegistryAdapterConfig = Static<typeof RegistryAdapterConfig>;
export type AdapterConfig = Static<typeof AdapterConfig>;

export const HTTP_DEFAULTS = { timeoutMs: 2_000, retries: 3, retryBaseMs: 50 } as const;
/** An HTTP config with its defaults filled in: what the adapter runs with. */
export type ResolvedHttpConfig = Required<Omit<HttpAdapterConfig, 'probe'>> & Pick<HttpAdapterConfig, 'probe'>;
