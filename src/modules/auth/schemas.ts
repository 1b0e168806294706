import { Type } from '@fastify/type-provider-typebox';
import { DATE_TIME_RULE } from '../../lib/date-time.ts';
import { IdString, Text } from '../../lib/schemas.ts';
import { ROLES } from './roles.ts';

const EXAMPLE_ID = '0b5f4c1e-7f51-4a39-9a8e-3c2f3f0b2a11';

export const RoleSchema = Type.Union(
  ROLES.map((r) => Type.Literal(r)),
  {
    description:
      'viewer: read; requester: submit operations; approver: approve; operator: start/pause/resume/abort; admin: everything',
  },
);

export const ScopeSchema = Type.Object(
  {
    resourceTypes: Type.Optional(
      Type.Array(Type.String({ pattern: '^[a-z][a-z0-9_]{0,39}$' }), {
        minItems: 1,
        maxItems: 100,
        uniqueItems: true,
        description: 'Resource types the token may submit for deletion',
      }),
    ),
    tenants: Type.Optional(
      Type.Array(IdString({ description: 'Tenant ID' }), {
        minItems: 1,
        maxItems: 10_000,
        uniqueItems: true,
        description: 'Tenants whose resources the token may submit for deletion',
      }),
    ),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description:
      'What a requester token may submit for deletion; an omitted list does not limit. IDs outside it reject the plan as out_of_scope',
    example: { resourceTypes: ['app'], tenants: ['tenant_00042', 'tenant_00043'] },
  },
);

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const DateTime = (description: string) => Type.String({ format: 'date-time', description });

export const CreateTokenBody = Type.Object(
  {
    name: Text({ minLength: 1, maxLength: 100, description: 'Who or what uses the token' }),
    role: RoleSchema,
    expiresAt: Type.Optional(
      DateTime(
        `The token stops working at this time (401 TOKEN_EXPIRED); omitted: never. ${DATE_TIME_RULE[0]!.toUpperCase()}${DATE_TIME_RULE.slice(1)}`,
      ),
    ),
    scope: Type.Optional(ScopeSchema),
  },
  {
    additionalProperties: false,
    description: 'A new API token',
    example: {
      name: 'team-a-ci',
      role: 'requester',
      expiresAt: '2027-06-01T00:00:00.000Z',
      scope: { resourceTypes: ['app'], tenants: ['tenant_00042'] },
    },
  },
);

export const RotateTokenBody = Type.Object(
  {
    graceSeconds: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 604_800,
        default: 86_400,
        description:
          'How long the secrets being replaced keep working (default 24 h); 0 stops them at once (a leaked secret)',
      }),
    ),
  },
  { additionalProperties: false, description: 'Rotation options', example: { graceSeconds: 3600 } },
);

export const TokenInfo = Type.Object(
  {
    id: Type.String({ format: 'uuid' }),
    name: Type.String(),
    role: Type.String(),
    scope: Nullable(ScopeSchema),
    status: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]),
    createdBy: Nullable(Type.String({ description: 'Id of the token that created it' })),
    createdByName: Nullable(Type.String({ description: 'Name of the token that created it' })),
    createdAt: DateTime('When it was created'),
    expiresAt: Nullable(DateTime('When it stops working')),
    revokedAt: Nullable(DateTime('When it was revoked')),
    previousSecretsValidUntil: Nullable(
      DateTime('A rotation is in its grace period: an older secret works until this time'),
    ),
  },
  { description: 'An API token (never its secret)' },
);

const created = {
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  role: Type.String(),
  scope: Nullable(ScopeSchema),
  createdAt: DateTime('When the token was created'),
  expiresAt: Nullable(DateTime('When it stops working')),
  token: Type.String({ description: 'The secret; shown only in this response' }),
  unknownScope: Type.Optional(
    Type.Object(
      {
        tenants: Type.Optional(Type.Array(Type.String(), { description: 'Scope tenants not in the registry' })),
        resourceTypes: Type.Optional(Type.Array(Type.String(), { description: 'Scope resource types not declared' })),
      },
      {
        description:
          'Present when the scope names tenants or resource types the registry does not have (yet): the token can submit nothing of them until they are imported or declared. A typo? Revoke the token and create it again.',
      },
    ),
  ),
};
const CREATED_EXAMPLE = {
  id: EXAMPLE_ID,
  name: 'team-a-ci',
  role: 'requester',
  scope: { resourceTypes: ['app'], tenants: ['tenant_00042'] },
  createdAt: '2026-11-24T12:00:00.000Z',
  expiresAt: null,
  token: 'bg_…',
};

export const CreatedToken = Type.Object(created, {
  description: 'The token secret is shown once',
  example: CREATED_EXAMPLE,
});

export const RotatedToken = Type.Object(
  {
    ...created,
    previousSecretsValidUntil: DateTime('The secrets this rotation replaced stop working at this time'),
  },
  {
    description: 'The new secret is shown once; the older ones keep working until previousSecretsValidUntil',
    example: { ...CREATED_EXAMPLE, previousSecretsValidUntil: '2026-11-25T12:00:00.000Z' },
  },
);

export const TokenList = Type.Object(
  { items: Type.Array(TokenInfo) },
  {
    description: 'Tokens',
    example: {
      items: [
        {
          id: EXAMPLE_ID,
          name: 'ci-pipeline',
          role: 'requester',
          scope: null,
          status: 'active',
          createdBy: null,
          createdByName: null,
          createdAt: '2026-11-24T12:00:00.000Z',
          expiresAt: null,
          revokedAt: null,
          previousSecretsValidUntil: null,
        },
      ],
    },
  },
);

export const TokenIdParams = Type.Object({ id: Type.String({ format: 'uuid', description: 'Token id' }) });

export const WhoAmI = Type.Object(
  {
    tokenId: Type.String({ format: 'uuid', description: 'Id of the token that sent the request' }),
    name: Type.String({ description: 'Its name (what audit events and halt reasons show)' }),
    role: Type.String({ description: 'viewer, requester, approver, operator or admin' }),
    scope: Nullable(ScopeSchema),
  },
  {
    description: 'The token that sent the request',
    example: { tokenId: EXAMPLE_ID, name: 'oncall-operator', role: 'operator', scope: null },
  },
);
