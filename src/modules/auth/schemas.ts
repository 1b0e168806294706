import { Type } from '@fastify/type-provider-typebox';
import { Text } from '../../lib/schemas.ts';
import { ROLES } from './roles.ts';

export const RoleSchema = Type.Union(
  ROLES.map((r) => Type.Literal(r)),
  {
    description:
      'viewer: read; requester: submit operations; approver: approve; operator: start/pause/resume/abort; admin: everything',
  },
);

export const CreateTokenBody = Type.Object(
  {
    name: Text({ minLength: 1, maxLength: 100, description: 'Who or what uses the token' }),
    role: RoleSchema,
  },
  { additionalProperties: false, description: 'A new API token', example: { name: 'ci-pipeline', role: 'requester' } },
);

export const TokenInfo = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    role: Type.String(),
    createdBy: Type.Union([Type.String(), Type.Null()]),
    createdAt: Type.String({ format: 'date-time' }),
    revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  },
  { description: 'An API token (never its secret)' },
);

export const CreatedToken = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    role: Type.String(),
    createdAt: Type.String({ format: 'date-time' }),
    token: Type.String({ description: 'The secret; shown only in this response' }),
  },
  {
    description: 'The token secret is shown once',
    example: {
      id: '0b5f4c1e-7f51-4a39-9a8e-3c2f3f0b2a11',
      name: 'ci-pipeline',
      role: 'requester',
      createdAt: '2026-11-24T12:00:00.000Z',
      token: 'bg_…',
    },
  },
);
