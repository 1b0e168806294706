// Admin routes for API tokens.
import { Type } from '@fastify/type-provider-typebox';
import { errorResponses, type App } from '../../lib/schemas.ts';
import { auditAlone } from '../audit/repository.ts';
import type { AuthService } from './service.ts';
import { CreateTokenBody, CreatedToken, TokenInfo } from './schemas.ts';

export default async function tokenRoutes(app: App, opts: { auth: AuthService }) {
  const { auth } = opts;
  app.post(
    '/admin/tokens',
    {
      config: { auth: ['admin'], audited: true },
      schema: {
        operationId: 'createToken',
        tags: ['admin'],
        summary: 'Create an API token',
        description: 'Creates a token with one role. The secret is returned once and stored only as a hash.',
        body: CreateTokenBody,
        response: { 201: CreatedToken, ...errorResponses(400, 401, 403) },
      },
    },
    async (req, reply) => {
      const created = await auth.createToken(req.body.name, req.body.role, req.principal!);
      await auditAlone(app.db.pool, {
        actor: req.principal!.name,
        action: 'token.create',
        outcome: 'accepted',
        payload: { tokenId: created.id, name: created.name, role: created.role },
      });
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
        description: 'All tokens with role and revocation time; never their secrets.',
        response: {
          200: Type.Object(
            { items: Type.Array(TokenInfo) },
            {
              description: 'Tokens',
              example: {
                items: [
                  {
                    id: '0b5f4c1e-7f51-4a39-9a8e-3c2f3f0b2a11',
                    name: 'ci-pipeline',
                    role: 'requester',
                    createdBy: null,
                    createdAt: '2026-11-24T12:00:00.000Z',
                    revokedAt: null,
                  },
                ],
              },
            },
          ),
          ...errorResponses(401, 403),
        },
      },
    },
    async () => ({ items: await auth.list() }),
  );

  app.delete(
    '/admin/tokens/:id',
    {
      config: { auth: ['admin'], audited: true },
      schema: {
        operationId: 'revokeToken',
        tags: ['admin'],
        summary: 'Revoke an API token',
        description: 'The token stops working at once.',
        params: Type.Object({ id: Type.String({ format: 'uuid', description: 'Token id' }) }),
        response: {
          200: Type.Object(
            { id: Type.String(), revoked: Type.Boolean() },
            { description: 'Revoked', example: { id: '0b5f4c1e-7f51-4a39-9a8e-3c2f3f0b2a11', revoked: true } },
          ),
          ...errorResponses(400, 401, 403, 404),
        },
      },
    },
    async (req) => {
      const r = await auth.revoke(req.params.id);
      await auditAlone(app.db.pool, {
        actor: req.principal!.name,
        action: 'token.revoke',
        outcome: 'accepted',
        payload: { tokenId: req.params.id },
      });
      return r;
    },
  );
}
