// Request and response shapes of /v1/admin/webhooks.
import { Type } from '@fastify/type-provider-typebox';
import { IdString, MultilineText, PageLinks, Text } from '../../lib/schemas.ts';
import { ALL_EVENTS, EVENT_TYPES } from './events.ts';
import { MAX_URL_LENGTH } from './url-policy.ts';

const ENDPOINT_ID = '0b5f4c1e-7f51-4a39-9a8e-3c2f3f0b2a11';
const EXAMPLE_URL = 'https://hooks.example.com/blastgate';

const Url = Text({
  minLength: 1,
  maxLength: MAX_URL_LENGTH,
  description: `Where events are POSTed: http or https, no credentials, a host BLASTGATE_DOWNSTREAM_ALLOW allows`,
  example: EXAMPLE_URL,
});
const Events = Type.Array(Text({ minLength: 1, maxLength: 64 }), {
  minItems: 1,
  maxItems: EVENT_TYPES.length + 1,
  uniqueItems: true,
  description: `Event types this endpoint receives, or ["${ALL_EVENTS}"] for all of them: ${EVENT_TYPES.join(', ')}`,
  example: ['operation.halted', 'operation.completed'],
});
const Format = Type.Union([Type.Literal('standard'), Type.Literal('slack')], {
  description:
    'standard: the event JSON { type, timestamp, data }; slack: a Slack incoming-webhook message { text, blocks }. Both are signed (Standard Webhooks headers)',
});
const Description = MultilineText({ maxLength: 500, description: 'What this endpoint is for' });

export const EndpointParams = Type.Object({
  id: IdString({ description: 'Webhook endpoint ID', example: ENDPOINT_ID }),
});

export const CreateBody = Type.Object(
  {
    url: Url,
    events: Events,
    format: Type.Optional(Format),
    description: Type.Optional(Description),
    enabled: Type.Optional(Type.Boolean({ description: 'Deliver events (default true)' })),
  },
  {
    additionalProperties: false,
    description: 'A new webhook endpoint',
    example: { url: EXAMPLE_URL, events: ['operation.halted', 'operation.completed'], format: 'standard' },
  },
);

export const UpdateBody = Type.Object(
  {
    url: Type.Optional(Url),
    events: Type.Optional(Events),
    format: Type.Optional(Format),
    description: Type.Optional(Type.Union([Description, Type.Null()])),
    enabled: Type.Optional(Type.Boolean({ description: 'false stops deliveries (those waiting are cancelled)' })),
  },
  {
    additionalProperties: false,
    minProperties: 1,
    description: 'The fields to change; the others stay',
    // Not `enabled: false`: "Try it out" as it stands would stop an endpoint's alerts.
    example: { description: 'Pages the storage on-call channel' },
  },
);

const endpointExample = {
  id: ENDPOINT_ID,
  url: EXAMPLE_URL,
  description: 'Incident channel',
  format: 'standard',
  events: ['operation.halted', 'operation.completed'],
  enabled: true,
  createdBy: 'admin',
  createdAt: '2026-11-30T02:00:00.000Z',
  updatedAt: '2026-11-30T02:00:00.000Z',
  deletedAt: null,
};

const endpointFields = {
  id: Type.String(),
  url: Type.String(),
  description: Type.Union([Type.String(), Type.Null()]),
  format: Type.String({ description: 'standard | slack' }),
  events: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  createdBy: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  deletedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'Set once deleted: it receives nothing, its delivery log stays readable',
  }),
};

export const EndpointView = Type.Object(endpointFields, {
  description: 'A webhook endpoint (its secret is shown only when created or rotated)',
  example: endpointExample,
});

export const EndpointWithSecret = Type.Object(
  {
    ...endpointFields,
    secret: Type.String({
      description:
        'The signing secret (whsec_…): shown this once. Verify deliveries with it (Standard Webhooks, e.g. the standardwebhooks package)',
    }),
  },
  {
    description: 'The endpoint and its signing secret, shown this once',
    example: { ...endpointExample, secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' },
  },
);

const deliveriesExample = { pending: 0, failed: 3, lastFailedAt: '2026-11-30T03:32:10.000Z' };

/** An endpoint as listed: with where its deliveries stand, so a failing receiver shows. */
export const EndpointStatus = Type.Object(
  {
    ...endpointFields,
    deliveries: Type.Object(
      {
        pending: Type.Integer({ description: 'Being tried (first attempt or retries)' }),
        failed: Type.Integer({ description: 'Gave up after every attempt: POST …/redeliver sends them again' }),
        lastFailedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
          description: 'When the last of them was recorded failed',
        }),
      },
      { description: 'Where its deliveries stand' },
    ),
  },
  {
    description: 'A webhook endpoint and where its deliveries stand',
    example: { ...endpointExample, deliveries: deliveriesExample },
  },
);

export const EndpointList = Type.Object(
  { items: Type.Array(EndpointStatus) },
  { description: 'Webhook endpoints', example: { items: [{ ...endpointExample, deliveries: deliveriesExample }] } },
);

export const ListQuery = Type.Object(
  {
    includeDeleted: Type.Optional(Type.Boolean({ default: false, description: 'Also list deleted endpoints' })),
  },
  { additionalProperties: false },
);

const DELIVERY_STATUSES = ['pending', 'delivered', 'failed', 'cancelled'] as const;

export const DeliveriesQuery = Type.Object(
  {
    after: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: Number.MAX_SAFE_INTEGER,
        description: 'Deliveries with id greater than this',
      }),
    ),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'Page size (default 100)' }),
    ),
    status: Type.Optional(
      Type.Union(
        DELIVERY_STATUSES.map((s) => Type.Literal(s)),
        { description: 'Only deliveries in this status' },
      ),
    ),
  },
  { additionalProperties: false },
);

const deliveryExample = {
  id: '42',
  eventId: 'evt_1234_operation_completed',
  eventType: 'operation.completed',
  operationId: 'op_01JD…',
  status: 'failed',
  attempts: 16,
  lastStatusCode: 500,
  lastError: 'HTTP 500',
  createdAt: '2026-11-30T02:00:00.000Z',
  updatedAt: '2026-11-30T02:04:15.000Z',
  deliveredAt: null,
  failedAt: '2026-11-30T02:04:15.000Z',
};

export const DeliveryPage = Type.Object(
  {
    items: Type.Array(
      Type.Object({
        id: Type.String({ description: 'Delivery id (page with after=<id>)' }),
        eventId: Type.String({ description: 'The webhook-id header: the same on every attempt' }),
        eventType: Type.String(),
        operationId: Type.Union([Type.String(), Type.Null()]),
        status: Type.String({ description: DELIVERY_STATUSES.join(' | ') }),
        attempts: Type.Integer(),
        lastStatusCode: Type.Union([Type.Integer(), Type.Null()]),
        lastError: Type.Union([Type.String(), Type.Null()]),
        createdAt: Type.String({ format: 'date-time' }),
        updatedAt: Type.String({ format: 'date-time' }),
        deliveredAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
        failedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
      }),
    ),
    nextAfter: Type.Union([Type.Integer(), Type.Null()], { description: 'Pass as after for the next page' }),
    links: PageLinks,
  },
  {
    description: 'A page of the delivery log, oldest first',
    example: { items: [deliveryExample], nextAfter: null, links: { next: null } },
  },
);

export const RedeliverBody = Type.Object(
  {
    reason: MultilineText({ minLength: 3, maxLength: 2000, description: 'Why (kept in the audit log)' }),
    deliveryIds: Type.Optional(
      Type.Array(
        Type.String({
          pattern: '^[1-9][0-9]{0,17}$',
          // Said instead of the pattern, which read as noise beside what was typed (a trial).
          'x-rule': 'a delivery ID is a positive integer',
          description: 'A delivery id (from the delivery log)',
        }),
        {
          minItems: 1,
          maxItems: 1000,
          uniqueItems: true,
          description:
            'These deliveries (each failed or cancelled); without it, the oldest 1,000 failed deliveries of the endpoint',
        },
      ),
    ),
  },
  {
    additionalProperties: false,
    description: 'Why, and which deliveries',
    example: { reason: 'Receiver was down for a deploy 14:00-14:20', deliveryIds: ['42', '43'] },
  },
);

export const RedeliverResult = Type.Object(
  {
    redelivered: Type.Integer({ description: 'How many deliveries went back to pending' }),
    deliveryIds: Type.Array(Type.String(), { description: 'Their ids, in order' }),
    more: Type.Boolean({
      description: 'Failed deliveries are left (without deliveryIds): ask again for the next ones',
    }),
  },
  {
    description:
      'The deliveries now pending again, each with a fresh series of attempts; a worker queues them within a poll',
    example: { redelivered: 2, deliveryIds: ['42', '43'], more: false },
  },
);
