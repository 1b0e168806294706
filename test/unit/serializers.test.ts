// Response serializers are shared by the routes (and apps) that answer with the same schema, and
// warmed on their examples: the first call of a serializer compiles the validators of its anyOf
// branches, which made the first pause (and the first resume, abort, rollback) after a start
// ~100 ms slower than the next ones under load (npm run bench -- control).
import fjs from 'fast-json-stringify';
import { Type } from '@fastify/type-provider-typebox';
import { describe, expect, it } from 'vitest';
import { ErrorResponse } from '../../src/lib/schemas.ts';
import { OperationSummary } from '../../src/modules/operations/list.ts';
import { OperationView, PlanSchema } from '../../src/modules/operations/schemas.ts';
import { buildSerializer, warmSerializers } from '../../src/plugins/serializers.ts';

const externalById = Object.fromEntries(
  [ErrorResponse, PlanSchema, OperationView, OperationSummary].map((s) => [(s as unknown as { $id: string }).$id, s]),
) as unknown as Record<string, Record<string, unknown>>;
const opts = { ajv: {} };
const route = (schema: object, url: string) => ({
  schema: schema as Record<string, unknown>,
  method: 'POST',
  url,
  httpStatus: '200',
});

describe('shared response serializers', () => {
  it('gives every route that answers with the same schema one serializer, whatever its description', () => {
    // A schema of this test's own: other test files in this process build serializers too.
    const id = `Answer_${Math.random().toString(36).slice(2)}`;
    const shared = { ...externalById, [id]: Type.Object({ n: Type.Integer() }, { $id: id }) } as typeof externalById;
    const a = buildSerializer(shared, opts);
    const b = buildSerializer({ ...shared }, opts); // another plugin context of the same app
    const pause = a(route({ ...Type.Ref(id), description: 'The operation after the command' }, '/pause'));
    const resume = b(route({ ...Type.Ref(id), description: 'The operation after the command' }, '/resume'));
    const get = a(route({ ...Type.Ref(id), description: 'The operation' }, '/operations/:id'));
    expect(resume).toBe(pause);
    expect(get).toBe(pause);
    expect(a(route(Type.Ref('OperationSummary'), '/operations'))).not.toBe(pause);
    // Other options (another app configured otherwise) get a serializer of their own.
    expect(buildSerializer(shared, { ajv: {} })(route(Type.Ref(id), '/pause'))).not.toBe(pause);
    expect(pause({ n: 2 })).toBe('{"n":2}');
  });

  it('writes what fast-json-stringify writes for the schema', () => {
    const shared = buildSerializer(externalById, opts)(route(Type.Ref('Operation'), '/x'));
    const example = (OperationView as unknown as { example: unknown }).example;
    expect(example).toBeDefined();
    const fresh = fjs({ $ref: 'Operation' }, { ...opts, schema: externalById } as never);
    expect(shared(example)).toBe(fresh(example));
    expect(JSON.parse(shared(example))).toMatchObject({ id: (example as { id: string }).id });
  });

  it('warms each serializer built so far on its example, and leaves one that cannot write it to its first answer', async () => {
    let reads = 0;
    const example = {
      get n() {
        reads++;
        return 7;
      },
    };
    const counted = buildSerializer(
      externalById,
      opts,
    )(route({ type: 'object', properties: { n: { type: 'integer' } }, example }, '/counted'));
    buildSerializer(
      externalById,
      opts,
    )(route(Type.Object({ s: Type.Array(Type.Integer()) }, { example: { s: 'not a list' } }), '/broken'));
    const before = reads;
    await warmSerializers();
    expect(reads).toBe(before + 1);
    expect(counted({ n: 3 })).toBe('{"n":3}');
  });
});
