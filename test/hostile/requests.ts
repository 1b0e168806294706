// Request plans: one arbitrary per OpenAPI operation that mixes well-formed requests with malformed,
// oversized, deeply nested, wrongly typed, unicode, NUL-bearing, content-type-lying and badly
// framed ones, sent with tokens of every role, bad ones and none. A plan is plain data (so
// fast-check can print and shrink it); `materialize` turns it into bytes on the wire.
import fc from 'fast-check';
import { ROLES, type Role } from '../../src/modules/auth/roles.ts';
import { poolOfPath, type Endpoint, type Schema } from './model.ts';
import { hostileString, hostileValue, mutationArb, validValue, type Mutation, type Pick } from './values.ts';

export const BAD_AUTH = [
  'missing',
  'unknown',
  'malformed',
  'basic',
  'long',
  'latin1',
  // The admin secret in odd spellings: another scheme case, extra blanks, twice, with a NUL.
  'lowercaseScheme',
  'extraBlanks',
  'twoSecrets',
  'nulInSecret',
] as const;
export type Auth = { role: Role } | { invalid: (typeof BAD_AUTH)[number] };
/** A path or query value: a known ID, a generated or hostile value, or raw text sent as is. */
export type Slot = { pick: Pick } | { value: unknown } | { raw: string };
export type Corruption =
  | { op: 'invalidUtf8'; at: number; bytes: number[] }
  | { op: 'truncate'; at: number }
  | { op: 'append'; text: string }
  | { op: 'bom' }
  | { op: 'empty' };
export type BodyPlan =
  | { kind: 'value'; type: string; value: unknown; mutations: Mutation[]; sendAs?: string; corrupt?: Corruption }
  | { kind: 'none'; sendAs?: string }
  | { kind: 'oversize'; sendAs: string; declaredOnly: boolean };

export interface Plan {
  endpoint: number;
  method?: string;
  auth: Auth;
  path: Record<string, Slot>;
  query: [string, Slot][];
  headers: [string, string][];
  body: BodyPlan;
  /** A query string beyond the server's header limit (answered 431). */
  hugeQuery?: boolean;
  /** Sent as raw bytes with this flaw in its HTTP framing (see FRAMINGS). */
  framing?: Framing;
}

/**
 * Flaws in the HTTP message itself, which only a raw socket can send: Node's parser refuses most
 * of them before any route runs, and some it would answer itself (417, 400 without Host).
 */
export const FRAMINGS = [
  'expect',
  'noHost',
  'http10',
  'absoluteForm',
  'rawBytesInTarget',
  'nulInTarget',
  'headerNul',
  'headerControl',
  'bareLf',
  'obsFold',
  'spaceBeforeColon',
  'dupContentLength',
  'badContentLength',
  'chunked',
  'clAndTe',
  'badChunk',
  'teGzip',
  'contentEncoding',
  'badVersion',
  'lowercaseMethod',
  'pipelined',
] as const;
export type Framing = (typeof FRAMINGS)[number];

export interface WireRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  framing?: Framing;
}

const LYING_TYPES = [
  'text/plain',
  'application/x-ndjson',
  'application/xml',
  'multipart/form-data; boundary=x',
  'application/x-www-form-urlencoded',
  'application/json; charset=utf-16',
  'application/json; charset=latin1',
  'APPLICATION/JSON',
  'application/merge-patch+json',
  '*/*',
  'application/json, text/plain',
  '',
];

/** Every role (mostly admin, who may call every route); a hostile request may also carry a bad token. */
const authArb = (hostile: boolean): fc.Arbitrary<Auth> =>
  fc.oneof(
    { arbitrary: fc.constant<Auth>({ role: 'admin' }), weight: 8 },
    { arbitrary: fc.constantFrom(...ROLES).map((role) => ({ role })), weight: 8 },
    {
      arbitrary: fc.constantFrom(...BAD_AUTH).map((invalid): Auth => ({ invalid })),
      weight: hostile ? 3 : 0,
    },
  );

const slotArb = (
  hostile: boolean,
  schema: Schema,
  name: string,
  resolve: (s: Schema) => Schema,
  pool?: Pick['$pick'],
) =>
  fc.oneof(
    {
      arbitrary: pool
        ? fc.nat(1_000).map((n): Slot => ({ pick: { $pick: pool, n } }))
        : fc.constant<Slot>({ value: 'x' }),
      weight: pool ? 5 : 0,
    },
    { arbitrary: validValue(schema, name, resolve).map((value): Slot => ({ value })), weight: 3 },
    { arbitrary: hostileValue.map((value): Slot => ({ value })), weight: hostile ? 3 : 0 },
    {
      arbitrary: fc
        .constantFrom(
          '%',
          '%zz',
          '%E0%A4%A',
          '%ED%A0%80',
          '%C0%AF',
          '%FF',
          '\u00ff\u00fe',
          'a'.repeat(1001),
          'a'.repeat(5000),
          '..',
          '.',
          '',
        )
        .map((raw): Slot => ({ raw })),
      weight: hostile ? 1 : 0,
    },
  );

function bodyArb(hostile: boolean, e: Endpoint, resolve: (s: Schema) => Schema): fc.Arbitrary<BodyPlan> {
  const types = Object.keys(e.body ?? {});
  // NDJSON and text bodies are generated from the JSON schema of the same route (rows or IDs).
  const jsonSchema = e.body?.['application/json'];
  const idList = validValue({ type: 'array', items: { type: 'string', format: 'id' } }, 'ids', resolve);
  // Built once per route: building an arbitrary (regexes included) costs far more than drawing from it.
  const valueArbs = new Map(
    types.map((type) => [
      type,
      type === 'text/plain' ? idList : validValue(jsonSchema ?? { type: 'string' }, '', resolve),
    ]),
  );
  const valueOf = (type: string) => valueArbs.get(type)!;
  if (!types.length)
    return fc.oneof(
      { arbitrary: fc.constant<BodyPlan>({ kind: 'none' }), weight: 9 },
      {
        arbitrary: fc.constantFrom(...LYING_TYPES).map((sendAs): BodyPlan => ({ kind: 'none', sendAs })),
        weight: hostile ? 3 : 0,
      },
    );
  if (!hostile)
    return fc
      .constantFrom(...types)
      .chain((type) =>
        valueOf(type).map((value): BodyPlan => ({ kind: 'value', type, value, mutations: [], sendAs: type })),
      );
  const corruption: fc.Arbitrary<Corruption> = fc.oneof(
    fc.record({
      op: fc.constant('invalidUtf8' as const),
      at: fc.nat(),
      bytes: fc.constantFrom<number[]>(
        [0xff],
        [0xc0, 0xaf],
        [0xed, 0xa0, 0x80],
        [0xe2, 0x82],
        [0xf4, 0x90, 0x80, 0x80],
      ),
    }),
    fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
    fc.record({ op: fc.constant('append' as const), text: fc.constantFrom('}', ' garbage', '\n{oops', '\u0000') }),
    fc.constant({ op: 'bom' as const }),
    fc.constant({ op: 'empty' as const }),
  );
  return fc.oneof(
    {
      arbitrary: fc.constantFrom(...types).chain((type) =>
        fc
          .record({
            kind: fc.constant('value' as const),
            type: fc.constant(type),
            value: valueOf(type),
            mutations: fc.oneof(
              { arbitrary: fc.constant<Mutation[]>([]), weight: 1 },
              { arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 3 }), weight: 4 },
            ),
            sendAs: fc.oneof(
              { arbitrary: fc.constant(type), weight: 6 },
              { arbitrary: fc.constantFrom(...LYING_TYPES), weight: 1 },
            ),
            corrupt: sometimes(corruption, 0.25),
          })
          .map((b) => {
            const out: BodyPlan = { ...b };
            if (b.corrupt === undefined) delete (out as { corrupt?: Corruption }).corrupt;
            return out;
          }),
      ),
      weight: 30,
    },
    { arbitrary: fc.constant<BodyPlan>({ kind: 'none' }), weight: 1 },
    {
      arbitrary: fc.record({
        kind: fc.constant('oversize' as const),
        sendAs: fc.constantFrom(...types),
        declaredOnly: fc.boolean(),
      }),
      weight: 1,
    },
  );
}

/**
 * The arbitrary of plans for one endpoint (by its index in the model). A careful plan is what a
 * correct client sends (so that handlers run and state changes); a hostile one breaks something.
 */
export function planArb(
  endpoints: Endpoint[],
  i: number,
  resolve: (s: Schema) => Schema,
  hostile: boolean,
): fc.Arbitrary<Plan> {
  const e = endpoints[i]!;
  const pathParams = e.params.filter((p) => p.in === 'path');
  const queryParams = e.params.filter((p) => p.in === 'query');
  const path = fc.record(
    Object.fromEntries(
      pathParams.map((p) => [p.name, slotArb(hostile, p.schema, p.name, resolve, poolOfPath(e.path))]),
    ),
  );
  const query = fc
    .tuple(
      ...queryParams.map((p) =>
        sometimes(
          slotArb(hostile, p.schema, p.name, resolve).map((s): [string, Slot] => [p.name, s]),
          p.required ? 0.95 : 0.5,
        ),
      ),
      // An unknown or repeated parameter.
      sometimes(
        fc.tuple(
          fc.oneof(hostileString, fc.constantFrom('limit', 'targetType', 'x')),
          hostileValue.map((value): Slot => ({ value })),
        ),
        hostile ? 0.15 : 0,
      ),
    )
    .map((xs) => xs.filter((x): x is [string, Slot] => x !== undefined));
  const headers = fc
    .tuple(
      sometimes(
        fc.tuple(
          fc.constant<string>('idempotency-key'),
          fc.oneof(
            { arbitrary: fc.stringMatching(/^[a-z0-9-]{1,20}$/), weight: 4 },
            { arbitrary: fc.constantFrom('k\u00e9y', 'has space', 'x'.repeat(300), ''), weight: hostile ? 1 : 0 },
          ),
        ),
        e.params.some((p) => p.name === 'idempotency-key') ? 0.5 : hostile ? 0.05 : 0,
      ),
      sometimes(
        fc.tuple(fc.constant('x-request-id'), fc.constantFrom('req\u00ff', 'x'.repeat(500), 'ok-id', ' ')),
        hostile ? 0.1 : 0,
      ),
    )
    .map((xs) => xs.filter((x): x is [string, string] => x !== undefined));
  return fc
    .record({
      endpoint: fc.constant(i),
      // Other methods and huge query strings are rare: most requests should reach a handler.
      method: sometimes(fc.constantFrom('HEAD', 'OPTIONS', 'PATCH', 'DELETE', 'TRACE'), hostile ? 0.05 : 0),
      auth: authArb(hostile),
      path,
      query,
      headers,
      body: bodyArb(hostile, e, resolve),
      hugeQuery: sometimes(fc.constant(true), hostile ? 0.01 : 0),
      framing: sometimes(fc.constantFrom(...FRAMINGS), hostile ? 0.08 : 0),
    })
    .map((p) => {
      const out: Plan = { ...p };
      if (out.method === undefined) delete out.method;
      if (out.hugeQuery === undefined) delete out.hugeQuery;
      // An oversized body goes through the HTTP client: on a raw socket, the early 413 and the
      // reset of a connection still being written to can race the read of the answer.
      if (out.framing === undefined || out.body.kind === 'oversize') delete out.framing;
      return out;
    });
}

/** `arb` with probability `p`, else undefined. */
function sometimes<T>(arb: fc.Arbitrary<T>, p: number): fc.Arbitrary<T | undefined> {
  const weight = Math.round(1000 * p);
  return fc.oneof({ arbitrary: fc.constant(undefined), weight: 1000 - weight }, { arbitrary: arb, weight });
}
