// What the hostile-input suite knows about the API: every operation of the committed OpenAPI
// document (the drift test keeps it equal to what the routes produce), with its parameters and
// body content types, and `$ref`s resolved against its components; and the surfaces the document
// leaves out (itself, metrics, the documentation UI).
import { readFileSync } from 'node:fs';
import { OPENAPI_FILE } from '../../scripts/openapi.ts';

export interface Schema {
  $ref?: string;
  type?: string;
  format?: string;
  pattern?: string;
  enum?: unknown[];
  const?: unknown;
  anyOf?: Schema[];
  oneOf?: Schema[];
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  items?: Schema;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  maxItems?: number;
  uniqueItems?: boolean;
  default?: unknown;
  [k: string]: unknown;
}

export interface Param {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  schema: Schema;
}

export interface Endpoint {
  method: string;
  /** OpenAPI path template, e.g. /v1/operations/{id}. */
  path: string;
  params: Param[];
  /** Body schemas by content type; absent: the operation takes no body. */
  body?: Record<string, Schema>;
}

interface Doc {
  paths: Record<
    string,
    Record<string, { parameters?: Param[]; requestBody?: { content: Record<string, { schema: Schema }> } }>
  >;
  components: { schemas: Record<string, Schema> };
}

export function loadModel(): { endpoints: Endpoint[]; resolve: (s: Schema) => Schema } {
  const doc = JSON.parse(readFileSync(OPENAPI_FILE, 'utf8')) as Doc;
  const resolve = (s: Schema): Schema => {
    for (let i = 0; s.$ref && i < 10; i++) {
      const name = s.$ref.replace('#/components/schemas/', '');
      const target = doc.components.schemas[name];
      if (!target) throw new Error(`dangling $ref ${s.$ref}`);
      s = target;
    }
    return s;
  };
  const endpoints: Endpoint[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const content = op.requestBody?.content;
      endpoints.push({
        method: method.toUpperCase(),
        path,
        params: (op.parameters ?? []).map((p) => ({ ...p, required: Boolean(p.required) })),
        ...(content
          ? { body: Object.fromEntries(Object.entries(content).map(([type, mt]) => [type, mt.schema])) }
          : {}),
      });
    }
  }
  return { endpoints: [...endpoints, ...UNDOCUMENTED], resolve };
}

/** Served outside the document (hidden from it), and driven all the same. */
const UNDOCUMENTED: Endpoint[] = [
  { method: 'GET', path: '/openapi.json', params: [] },
  { method: 'GET', path: '/metrics', params: [] },
  { method: 'GET', path: '/docs', params: [] },
  {
    method: 'GET',
    path: '/docs/static/{file}',
    params: [
      { name: 'file', in: 'path', required: true, schema: { type: 'string', enum: ['index.html', 'index.css'] } },
    ],
  },
  { method: 'GET', path: '/ui', params: [] },
  {
    method: 'GET',
    path: '/ui/{file}',
    params: [{ name: 'file', in: 'path', required: true, schema: { type: 'string', enum: ['app.js', 'app.css'] } }],
  },
];

/** The pool of known IDs a path's `{id}` should mostly be drawn from. */
export function poolOfPath(path: string): Pool {
  if (path.startsWith('/v1/registry/resources')) return 'resource';
  if (path.startsWith('/v1/registry/tenants')) return 'tenant';
  if (path.startsWith('/v1/admin/tokens')) return 'token';
  return 'operation';
}

/** Known values the server has, so that generated requests reach past "not found". */
export type Pool = 'resource' | 'app' | 'tenant' | 'operation' | 'token' | 'planHash' | 'type';
export type Pools = Record<Pool, string[]>;

/** Fields whose values are best drawn from a pool (by field name, wherever they appear). */
export const FIELD_POOLS: Record<string, Pool> = {
  ids: 'app',
  parentId: 'resource',
  tenantId: 'tenant',
  operationId: 'operation',
  cursor: 'operation',
  planHash: 'planHash',
  targetType: 'type',
  parentType: 'type',
  cascadeTo: 'type',
  type: 'type',
};
