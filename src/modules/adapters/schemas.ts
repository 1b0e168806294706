// The adapter config stored on a resource type (resource_types.adapter, jsonb). One schema per
// kind, discriminated by `kind`; the union is what the registry API accepts.
import { Type, type Static } from '@fastify/type-provider-typebox';
import { SECRET_NAME_PATTERN } from './signing-secrets.ts';

/** The adapter kinds a resource type may declare. */
export const ADAPTER_KINDS = ['http', 'registry'] as const;
/** Methods a request template may use. */
export const TEMPLATE_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
/** Placeholders an item request template may hold; each is filled in URL-encoded. */
export const ITEM_PLACEHOLDERS = ['id', 'tenantId', 'type', 'operationId'] as const;
/** A probe is about a tenant, not an item: only {tenantId} can be filled in. */
export const PROBE_PLACEHOLDERS = ['tenantId'] as const;
/** The request templates every http adapter needs. */
export const REQUIRED_TEMPLATES = ['snapshot', 'softDelete', 'restore', 'hardDelete'] as const;
/** Integer settings of the http adapter: range and the value used when omitted. */
export const HTTP_LIMITS = {
  snapshotBatchSize: { minimum: 1, maximum: 1_000, default: 100 },
  timeoutMs: { minimum: 10, maximum: 120_000, default: 2_000 },
  retries: { minimum: 0, maximum: 10, default: 3 },
  retryBaseMs: { minimum: 1, maximum: 60_000, default: 50 },
} as const;
export const MAX_TEMPLATE_LENGTH = 2000;
/**
 * scheme://host[:port][/base/path]: no user info, query, fragment, whitespace or backslash. The
 * registry also parses it with `new URL()` (host present, port in range).
 */
export const BASE_URL_PATTERN = '^https?://[^\\s/?#@\\\\]+(/[^\\s?#\\\\]*)?$';

// "METHOD /path" where the path may hold the allowed {placeholders}. Checking them when the type is
// declared turns a typo ({resourceId}) into a 422 instead of a request to a literal
// "/apps/{resourceId}" in the middle of a rollout.
const templatePattern = (placeholders: readonly string[]) =>
  `^(${TEMPLATE_METHODS.join('|')}) /([^\\s{}]|\\{(${placeholders.join('|')})\\})*$`;
export const TEMPLATE = templatePattern(ITEM_PLACEHOLDERS);
export const PROBE_TEMPLATE = templatePattern(PROBE_PLACEHOLDERS);
/** A bulk snapshot read is about many items at once: POST, and no item placeholder can be filled in. */
export const BATCH_TEMPLATE = '^POST /[^\\s{}]*$';

const ITEM_TEMPLATE_RULE = `"METHOD /path" with METHOD one of ${TEMPLATE_METHODS.join(', ')}; the path (appended to baseUrl, may hold a query) may hold ${ITEM_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}`;

const RequestTemplate = (description: string, example: string) =>
  Type.String({
    pattern: TEMPLATE,
    maxLength: MAX_TEMPLATE_LENGTH,
    description: `${description}. ${ITEM_TEMPLATE_RULE}`,
    example,
  });

const Setting = (name: keyof typeof HTTP_LIMITS, description: string) =>
  Type.Optional(Type.Integer({ ...HTTP_LIMITS[name], description }));

export const HttpAdapterConfig = Type.Object(
  {
    kind: Type.Literal('http'),
    baseUrl: Type.String({
      pattern: BASE_URL_PATTERN,
      maxLength: MAX_TEMPLATE_LENGTH,
      description:
        'Scheme (http or https), host, optional port and optional base path of the owning system; templates are appended. No credentials, query or fragment',
      example: 'http://127.0.0.1:8080',
    }),
    signingSecret: Type.Optional(
      Type.String({
        pattern: SECRET_NAME_PATTERN,
        maxLength: 64,
        description:
          'Name of the secret this adapter signs its requests with (X-Blastgate-Signature v2). The value is never stored here: every server that declares or runs the type reads it from BLASTGATE_SECRET_<NAME> (upper case, - as _) or BLASTGATE_SECRET_<NAME>_FILE. Omitted: the default secret, BLASTGATE_SIGNING_SECRET. A name the server cannot resolve is refused',
        example: 'apps-prod',
      }),
    ),
    snapshot: RequestTemplate(
      'Reads one resource; the 2xx JSON body is stored as its snapshot before any destructive call',
      'GET /apps/{id}',
    ),
    snapshotBatch: Type.Optional(
      Type.String({
        pattern: BATCH_TEMPLATE,
        maxLength: MAX_TEMPLATE_LENGTH,
        description:
          'Optional bulk snapshot read, used instead of `snapshot` when set: "POST /path" (no placeholders). The signed request body is {"items":[{"id","tenantId","type","operationId"},…]} (at most snapshotBatchSize items); a 2xx answer is {"items":{"<id>": <snapshot body>,…}}. An ID absent from the answer (or null) fails that item exactly as a failed single snapshot would (no snapshot, no call); a failed request fails all its items, after the usual retries',
        example: 'POST /apps/snapshots',
      }),
    ),
    snapshotBatchSize: Setting('snapshotBatchSize', 'Most items in one snapshotBatch request'),
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
        maxLength: MAX_TEMPLATE_LENGTH,
        description: `Health of one tenant: 2xx (optionally {"healthy":true}) is healthy; {"healthy":false} or 5xx is unhealthy. Without it analysis is inconclusive when the halt policy requires a probe. "METHOD /path" like the other templates, but the only placeholder is {tenantId}`,
        example: 'GET /tenants/{tenantId}/health',
      }),
    ),
    volatileFields: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_.-]{0,63}$', description: 'A top-level field name' }), {
        maxItems: 50,
        uniqueItems: true,
        description:
          'Top-level fields of the snapshot body that the owning system rewrites on every write (e.g. updatedAt, etag): the restore drill leaves them out when it compares a restored resource with its snapshot. Every other field must come back as it was',
        example: ['updatedAt'],
      }),
    ),
    timeoutMs: Setting('timeoutMs', 'Deadline of one attempt, connection to last byte'),
    retries: Setting(
      'retries',
      'Extra attempts after a timeout, connection error, 408, 429 or 5xx; always with the same Idempotency-Key',
    ),
    retryBaseMs: Setting('retryBaseMs', 'First backoff; doubles per attempt, with jitter'),
  },
  {
    additionalProperties: false,
    description:
      'Acts on the owning system over HTTP with signed requests (X-Blastgate-Signature v2, with the secret named by signingSecret) and an Idempotency-Key on every destructive call. The baseUrl host must be allowed by BLASTGATE_DOWNSTREAM_ALLOW on the servers that declare and run the type',
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
    signingSecret: 'apps-prod',
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

export const HTTP_DEFAULTS = {
  snapshotBatchSize: HTTP_LIMITS.snapshotBatchSize.default,
  timeoutMs: HTTP_LIMITS.timeoutMs.default,
  retries: HTTP_LIMITS.retries.default,
  retryBaseMs: HTTP_LIMITS.retryBaseMs.default,
};
/** An HTTP config with its defaults filled in: what the adapter runs with. */
export type ResolvedHttpConfig = Required<
  Omit<HttpAdapterConfig, 'probe' | 'signingSecret' | 'volatileFields' | 'snapshotBatch'>
> &
  Pick<HttpAdapterConfig, 'probe' | 'volatileFields' | 'snapshotBatch'>;
