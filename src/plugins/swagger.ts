// OpenAPI document from the route schemas, and Swagger UI at /docs for operators.
import fp from 'fastify-plugin';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';

export const OPENAPI_INFO = {
  title: 'Blastgate',
  description:
    'Deletion-safety gate. Destructive bulk operations are resolved ID by ID against the tenant registry, ' +
    'planned with their blast radius, and executed in canary waves with automatic halt and rollback. ' +
    'Every /v1 route needs `Authorization: Bearer <token>`; errors are `{ code, message, details, requestId }`. ' +
    'To follow operations live (progress per wave, bake countdown, probes, halt reason, audit timeline, pause and ' +
    'rollback buttons), open the [live view](/ui).',
  version: '0.1.0',
};

export default fp(
  async (app) => {
    await app.register(swagger, {
      hideUntagged: true,
      // Components are named by their $id (ErrorResponse, AuditEvent), not def-0, def-1, …
      refResolver: {
        buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
      },
      openapi: {
        openapi: '3.0.3',
        info: OPENAPI_INFO,
        servers: [{ url: '/' }],
        components: {
          securitySchemes: {
            bearerAuth: {
              type: 'http',
              scheme: 'bearer',
              description: 'An API token created by an admin (POST /v1/admin/tokens)',
            },
          },
        },
        tags: [
          {
            name: 'registry',
            // Swagger UI lists a tag's routes by path, resources first; a resource needs its type
            // and tenant declared, and the examples are written to be executed in this order.
            description:
              'Tenant registry: resource types, tenants, resources. Declare the types (PUT /v1/registry/types) and ' +
              'tenants (POST /v1/registry/tenants) before their resources (POST /v1/registry/resources); executed ' +
              'in that order, the examples declare example_site and example_app, tenant tn_example and three ' +
              "resources of their own (never a real one), and POST /v1/operations' example then shows a dry run's plan",
          },
          { name: 'operations', description: 'Destructive operations: plans, approvals, execution' },
          {
            name: 'restores',
            description:
              'Restores of what Blastgate deleted: a tenant, an operation or IDs, to a point in time; run as operations',
          },
          {
            name: 'purges',
            description:
              'Purges: hard deletes of what is past its retention, approved by a second person; run as operations',
          },
          { name: 'admin', description: 'API tokens and policy' },
          { name: 'audit', description: 'Append-only, hash-chained audit log' },
          { name: 'health', description: 'Liveness and readiness' },
        ],
      },
    });
    await app.register(swaggerUi, {
      routePrefix: '/docs',
      // A bearer token typed into "Authorize" lives in the page only: persisted, it would sit in
      // the browser's localStorage, readable by any script of this origin, after the tab closes.
      uiConfig: { persistAuthorization: false, docExpansion: 'list' },
      // No online validator badge: the page loads nothing from outside this server (see helmet.ts).
      validatorUrl: false,
    });
    app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'swagger' },
);
