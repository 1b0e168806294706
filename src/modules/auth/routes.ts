// Admin routes for API tokens. The service writes each change and its audit event in one transaction.
import { Type } from '@fastify/type-provider-typebox';
import { ERROR_EXAMPLES } from '../../lib/error-examples.ts';
import { errorResponse, errorResponses, type App } from '../../lib/schemas.ts';
import { DEFAULT_ROTATION_GRACE_SECONDS, type AuthService } from './service.ts';
import {
  CreateTokenBody,
  CreatedToken,
  RotateTokenBody,
  RotatedToken,
  TokenIdParams,
  TokenList,
  WhoAmI,
} from './schemas.ts';

export default async function tokenRoutes(app: App, opts: { auth: AuthService }) {
  const { auth } = opts;
  // Any role: a client (the live view at /ui) shows only the buttons its token may use.
  app.get(
    '/auth/whoami',
    {
      config: { auth: 'any' },
      schema: {
        operationId: 'whoAmI',
        tags: ['admin'],
        summary: 'Who am I',
        description:
          'The id, name, role and scope of the token that sends the request; never its secret. Any role may ask.',
        response: { 200: WhoAmI, ...errorResponses(401) },
      },
    },
    async (req) => {
      const { tokenId, name, role, scope } = req.principal!;
      return { tokenId, name, role, scope };
    },
  );

  app.post(
    '/admin/tokens',
    {
      config: { auth: ['admin'], audited: true },
      schema: {
        operationId: 'createToken',
        tags: ['admin'],
        summary: 'Create an API token',
        description:
          'Creates a token with one role, an optional expiry and (requester tokens) an optional scope. The secret is returned once and stored only as a hash. ' +
          'The name must not be that of another token still in use (409 TOKEN_NAME_TAKEN): names are what the audit log, approvals and halt reasons show.',
        body: CreateTokenBody,
        response: {
          201: CreatedToken,
          ...errorResponses(400, 401, 403),
          409: errorResponse(409, ERROR_EXAMPLES.tokenNameTaken),
        },
      },
    },
    async (req, reply) => {
      const { name, role, expiresAt, scope } = req.body;
      const created = await auth.createToken(name, role, req.principal!, { expiresAt, scope });
      return reply.status(201).send(created);
    },
  );

  app.get(
    '/admin/tokens',
    {
      config: { auth: ['admin'] },
      schema: {
        operationId: 'listTokens',
        tags: ['admin'],
        summary: 'List API tokens',
        description: 'All tokens with role, scope, status, expiry and rotation grace; never their secrets.',
        response: { 200: TokenList, ...errorResponses(401, 403) },
      },
    },
    async () => ({ items: await auth.list() }),
  );

  app.post(
    '/admin/tokens/:id/rotate',
    {
      config: { auth: ['admin'], audited: true },
      schema: {
        operationId: 'rotateToken',
        tags: ['admin'],
        summary: 'Rotate an API token',
        description:
          'Issues a new secret for the same token (same id, name, role, scope and expiry), shown once. The secrets it replaces keep working for `graceSeconds` (default 24 h), then answer 401 TOKEN_ROTATED. A revoked or expired token cannot be rotated (409).',
        params: TokenIdParams,
        body: RotateTokenBody,
        response: {
          200: RotatedToken,
          ...errorResponses(400, 401, 403),
          404: errorResponse(404, ERROR_EXAMPLES.tokenNotFound),
          409: errorResponse(409, ERROR_EXAMPLES.tokenRevoked),
        },
      },
    },
    async (req) => auth.rotate(req.params.id, req.body.graceSeconds ?? DEFAULT_ROTATION_GRACE_SECONDS, req.principal!),
  );

  app.delete(
    '/admin/tokens/:id',
    {
      config: { auth: ['admin'], audited: true },
      schema: {
        operationId: 'revokeToken',
        tags: ['admin'],
        summary: 'Revoke an API token',
        description:
          'Every secret of the token stops working at once (401 TOKEN_REVOKED), for good: a restart never brings it back. The last active admin token cannot be revoked (409 LAST_ADMIN_TOKEN).',
        params: TokenIdParams,
        response: {
          200: Type.Object(
            { id: Type.String(), revoked: Type.Boolean() },
            { description: 'Revoked', example: { id: '0b5f4c1e-7f51-4a39-9a8e-3c2f3f0b2a11', revoked: true } },
          ),
          ...errorResponses(400, 401, 403),
          404: errorResponse(404, ERROR_EXAMPLES.tokenNotFound),
          409: errorResponse(409, ERROR_EXAMPLES.lastAdminToken),
        },
      },
    },
    async (req) => auth.revoke(req.params.id, req.principal!),
  );
}
