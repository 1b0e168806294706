// The item ledger as clients page through it (GET /v1/operations/{id}/items).
import { Type } from '@fastify/type-provider-typebox';
import { PageLinks } from '../../lib/schemas.ts';

export const ItemView = Type.Object(
  {
    seq: Type.Integer({ description: 'Position in the ledger (wave order)' }),
    resourceId: Type.String(),
    tenantId: Type.String(),
    type: Type.String({ description: "The resource's type (a descendant has its own)" }),
    parentSeq: Type.Union([Type.Integer(), Type.Null()], {
      description: 'A descendant: the seq of the item whose delete takes it (a cascade); null for a submitted ID',
    }),
    wave: Type.Integer(),
    state: Type.String(),
    attempts: Type.Integer(),
    lastError: Type.Union([Type.String(), Type.Null()], {
      description:
        'Why the item did not get where it should; a restore refused because its snapshot failed verification starts with snapshot_corrupt (or erased, no_snapshot). ' +
        'On a `restored` item, a note: "already restored by op_…" when a rollback found it brought back by another operation and sent nothing',
    }),
    purgeAfter: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
      description: "When the resource's retention ends (soft-deleted by an operation and not purged); null otherwise",
    }),
    updatedAt: Type.String({ format: 'date-time' }),
  },
  { description: 'One item of the ledger' },
);

export const ItemsPage = Type.Object(
  { items: Type.Array(ItemView), nextCursor: Type.Union([Type.String(), Type.Null()]), links: PageLinks },
  {
    description: 'A page of items in ledger order (wave by wave)',
    example: {
      items: [
        {
          seq: 0,
          resourceId: 'app_1',
          tenantId: 't_1',
          type: 'app',
          parentSeq: null,
          wave: 0,
          state: 'pending',
          attempts: 0,
          lastError: null,
          purgeAfter: null,
          updatedAt: '2026-11-24T12:00:00.000Z',
        },
      ],
      nextCursor: null,
      links: { next: null },
    },
  },
);
