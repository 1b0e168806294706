// Response serializers: one per distinct response schema, shared by every route (and app) that
// answers with it, and warmed before the first request that needs it.
//
// Why: a serializer that picks anyOf branches compiles their validators with its own ajv on its
// first call, not when it is built. For the Operation view that first call took 137–189 ms on a
// quiet machine (a throw-away script, --cpu-prof: ajv's compileSchema), and Fastify
// builds one serializer per route: the first pause after a start answered in 145–211 ms under
// load where the next ones took ~20 ms (npm run bench -- control), and so did the first resume,
// abort or rollback, each on its own. Shared, the commands and the GET use one serializer per
// schema; warmed (server.ts, after listening), none of them pays for it on an operator's click.
import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';

type Serialize = (data: unknown) => string;
type Schema = Record<string, unknown>;
interface RouteSchema {
  schema: Schema;
  method: string;
  url: string;
  httpStatus: string;
}
interface Built {
  fn: Serialize;
  schema: Schema;
  external: Record<string, Schema>;
  opts: unknown;
}

/** Keywords that describe a schema without changing what is written (only at the top level:
 * below it, a key may be a property's name). */
const ANNOTATIONS = new Set(['description', 'example', 'examples', 'title', '$comment']);

const keyOf = (schema: Schema) =>
  JSON.stringify(Object.fromEntries(Object.entries(schema).filter(([k]) => !ANNOTATIONS.has(k))));

/** Same shared schemas (by reference: one TypeBox object per schema in this process) and options. */
const sameContext = (b: Built, external: Record<string, Schema>, opts: unknown) =>
  b.opts === opts &&
  Object.keys(b.external).length === Object.keys(external).length &&
  Object.entries(external).every(([id, s]) => b.external[id] === s);

const built = new Map<string, Built[]>();
/** Contexts kept per schema (an app's shared schemas and options are one: see app.ts). */
const MAX_CONTEXTS = 4;

/** The `compilersFactory.buildSerializer` of every app in this process. */
export function buildSerializer(externalSchemas: Record<string, Schema>, serializerOpts: unknown) {
  const compile = SerializerSelector()(externalSchemas, serializerOpts as never) as (r: RouteSchema) => Serialize;
  return (route: RouteSchema): Serialize => {
    const key = keyOf(route.schema);
    const same = built.get(key) ?? [];
    const found = same.find((b) => sameContext(b, externalSchemas, serializerOpts));
    if (found) return found.fn;
    const b = { fn: compile(route), schema: route.schema, external: externalSchemas, opts: serializerOpts };
    // Bounded: apps that bring shared schemas or options of their own (none here) are not kept.
    if (same.length < MAX_CONTEXTS) built.set(key, [...same, b]);
    return b.fn;
  };
}

/** A response's documented example: its own, or the one of the shared schema it refers to. */
function exampleOf(b: Built): unknown {
  const own = b.schema.example ?? (b.schema.examples as unknown[] | undefined)?.[0];
  if (own !== undefined) return own;
  const ref = typeof b.schema.$ref === 'string' ? b.external[b.schema.$ref] : undefined;
  return ref?.example ?? (ref?.examples as unknown[] | undefined)?.[0];
}

/**
 * Runs each serializer built so far once on its schema's example, one per turn of the event loop,
 * so that their validators are compiled before a request needs them. Returns how many ran. A
 * serializer that throws on its example is left to compile on its first real answer.
 */
export async function warmSerializers(): Promise<number> {
  let warmed = 0;
  for (const b of [...built.values()].flat()) {
    const example = exampleOf(b);
    if (example === undefined) continue;
    try {
      b.fn(example);
      warmed++;
    } catch {
      // Left to its first answer.
    }
    await new Promise((r) => setImmediate(r));
  }
  return warmed;
}
