// The committed OpenAPI document is what the routes produce, and it is good enough to be the API's
// reference: every operation is named, tagged, described, has examples and documents its auth.
import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_FILE, generateOpenApi } from '../../scripts/openapi.ts';
import { CODES_BY_STATUS } from '../../src/lib/error-examples.ts';

interface Schema {
  $ref?: string;
  description?: string;
  example?: unknown;
  [k: string]: unknown;
}
interface MediaType {
  schema?: Schema;
  example?: unknown;
  examples?: Record<string, unknown>;
}
interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: Schema;
}
interface Operation {
  operationId?: string;
  parameters?: Parameter[];
  tags?: string[];
  summary?: string;
  description?: string;
  security?: Record<string, string[]>[];
  requestBody?: { content?: Record<string, MediaType> };
  responses?: Record<string, { content?: Record<string, MediaType> }>;
}
interface Doc {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas?: Record<string, Schema>; securitySchemes?: Record<string, unknown> };
  tags?: { name: string }[];
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'];

let generated: string;
let doc: Doc;
beforeAll(async () => {
  generated = await generateOpenApi();
  doc = JSON.parse(generated) as Doc;
});

function operations(): { key: string; path: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([m]) => METHODS.includes(m))
      .map(([m, op]) => ({ key: `${m.toUpperCase()} ${path}`, path, op })),
  );
}

/** Follows `$ref`s into components/schemas; fails on a dangling reference. */
function resolve(schema: Schema, seen = new Set<string>()): Schema {
  if (!schema.$ref) return schema;
  const name = /^#\/components\/schemas\/(.+)$/.exec(schema.$ref)?.[1];
  const target = name ? doc.components.schemas?.[name] : undefined;
  if (!name || !target) throw new Error(`dangling $ref ${schema.$ref}`);
  if (seen.has(name)) throw new Error(`circular $ref ${schema.$ref}`);
  seen.add(name);
  // An example next to the $ref (allowed by tools, ignored by OpenAPI 3.0) would not count.
  return resolve(target, seen);
}

/** The example a schema shows: its own, else (allOf of one $ref) the referenced schema's. */
function shownSchemaExample(schema: Schema): unknown {
  const s = resolve(schema);
  if (s.example !== undefined) return s.example;
  const all = s.allOf as Schema[] | undefined;
  return all?.length === 1 ? shownSchemaExample(all[0]!) : undefined;
}

/** Media types in `content` that carry no example: none on the media type, none on its schema. */
function withoutExample(content: Record<string, MediaType> | undefined): string[] {
  return Object.entries(content ?? {})
    .filter(
      ([, mt]) =>
        mt.example === undefined &&
        mt.examples === undefined &&
        (!mt.schema || resolve(mt.schema).example === undefined),
    )
    .map(([type]) => type);
}

describe('OpenAPI document', () => {
  it('is up to date with the route schemas (run `npm run openapi` when this fails)', () => {
    let committed: string;
    try {
      committed = readFileSync(OPENAPI_FILE, 'utf8');
    } catch {
      throw new Error('openapi/openapi.json is missing: run `npm run openapi` and commit the file');
    }
    // Compared as text so that formatting drift is caught too; the message says what to do.
    expect(
      committed === generated,
      'openapi/openapi.json differs from the routes: run `npm run openapi` and commit the file',
    ).toBe(true);
  });

  it('names, tags and describes every operation, with unique operationIds and declared tags', () => {
    const problems: string[] = [];
    const declaredTags = new Set((doc.tags ?? []).map((t) => t.name));
    const ids = new Map<string, string>();
    for (const { key, op } of operations()) {
      if (!op.operationId) problems.push(`${key}: no operationId`);
      else if (ids.has(op.operationId))
        problems.push(`${key}: operationId "${op.operationId}" also used by ${ids.get(op.operationId)}`);
      else ids.set(op.operationId, key);
      if (!op.tags?.length) problems.push(`${key}: no tag`);
      for (const tag of op.tags ?? [])
        if (!declaredTags.has(tag)) problems.push(`${key}: tag "${tag}" is not declared in src/plugins/swagger.ts`);
      if (!op.summary?.trim()) problems.push(`${key}: no summary`);
      if (!op.description?.trim()) problems.push(`${key}: no description`);
    }
    expect(operations().length).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });

  it('has an example for every request body and every 2xx response', () => {
    const problems: string[] = [];
    for (const { key, op } of operations()) {
      for (const type of withoutExample(op.requestBody?.content))
        problems.push(`${key}: request body ${type} has no example`);
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        if (!/^2\d\d$/.test(status)) continue;
        for (const type of withoutExample(response.content))
          problems.push(`${key}: response ${status} ${type} has no example`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('declares bearer auth and documents 401 on every /v1 operation', () => {
    expect(doc.components.securitySchemes?.bearerAuth).toBeDefined();
    const problems: string[] = [];
    const v1 = operations().filter(({ path }) => path.startsWith('/v1/'));
    for (const { key, op } of v1) {
      if (!op.security?.some((s) => 'bearerAuth' in s)) problems.push(`${key}: no bearerAuth security`);
      if (!op.responses?.['401']) problems.push(`${key}: 401 not documented`);
    }
    expect(v1.length).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });

  it('documents the refusals of input every route can answer: 400 for parameters, 400/413/415 for a body', () => {
    // A trial found body routes without 413/415 and parameterised GETs without 400, which they answer.
    const problems: string[] = [];
    for (const { key, op } of operations().filter(({ path }) => path.startsWith('/v1/'))) {
      const needs = [
        ...(op.parameters?.some((p) => p.in === 'path' || p.in === 'query') ? ['400'] : []),
        ...(op.requestBody ? ['400', '413', '415'] : []),
      ];
      for (const status of new Set(needs))
        if (!op.responses?.[status]) problems.push(`${key}: ${status} not documented`);
    }
    expect(problems).toEqual([]);
  });

  it('shows, for every error status of every operation, an example of that status', () => {
    // Swagger UI shows the media type's example, else the schema's: with one example on the shared
    // ErrorResponse every status showed the same 400 VALIDATION_FAILED.
    const problems: string[] = [];
    let checked = 0;
    for (const { key, op } of operations())
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        if (!/^[45]\d\d$/.test(status)) continue;
        const allowed = CODES_BY_STATUS[Number(status)];
        for (const [type, mt] of Object.entries(response.content ?? {})) {
          // Only error bodies: /readyz answers 503 with its own readiness shape.
          if (!JSON.stringify(mt.schema ?? {}).includes('#/components/schemas/ErrorResponse')) continue;
          const shown = (mt.example ??
            Object.values(mt.examples ?? {}).map((e) => (e as { value?: unknown }).value)[0] ??
            (mt.schema ? shownSchemaExample(mt.schema) : undefined)) as { code?: string } | undefined;
          checked++;
          if (!shown?.code) problems.push(`${key} ${status} ${type}: no example with a code`);
          else if (!allowed) problems.push(`${key} ${status}: no codes known for this status`);
          else if (!allowed.includes(shown.code))
            problems.push(`${key} ${status} ${type}: example code ${shown.code} is not a ${status} code`);
        }
      }
    expect(checked).toBeGreaterThan(100);
    expect(problems).toEqual([]);
  });

  it('offers examples that create nothing: submissions are dry runs, control reasons are neutral', () => {
    const body = (path: string) => {
      const schema = doc.paths[path]?.post?.requestBody?.content?.['application/json']?.schema;
      return schema ? (resolve(schema).example as Record<string, unknown>) : undefined;
    };
    for (const path of ['/v1/operations', '/v1/restores', '/v1/purges']) expect(body(path)?.dryRun, path).toBe(true);
    const ndjson = doc.paths['/v1/operations']?.post?.requestBody?.content?.['application/x-ndjson']?.schema;
    expect(JSON.parse(String(ndjson?.example).split('\n')[0]!).dryRun).toBe(true);
    const text = doc.paths['/v1/operations/text']?.post?.parameters?.find((p) => p.name === 'dryRun');
    expect(text?.schema?.example ?? (text as { example?: unknown } | undefined)?.example).toBe(true);
    // What a pause or a rollback example records as the halt reason people read later.
    for (const cmd of ['pause', 'resume', 'abort', 'rollback', 'start']) {
      const reason = String(body(`/v1/operations/{id}/${cmd}`)?.reason);
      expect(reason, cmd).toMatch(/from the dashboard/);
      expect(reason, cmd).not.toMatch(/ticket|incident|tenant/i);
    }
    expect(String(body('/v1/operations/{id}/signals')?.detail)).toMatch(/^EXAMPLE/);
  });

  it('describes every component schema', () => {
    const missing = Object.entries(doc.components.schemas ?? {})
      .filter(([, s]) => !s.description?.trim())
      .map(([name]) => name);
    expect(missing).toEqual([]);
  });

  it('says exactly what the server requires: defaults are optional, the text upload requires its spec', () => {
    const problems: string[] = [];
    for (const { key, op } of operations())
      for (const p of op.parameters ?? [])
        if (p.required && p.schema && resolve(p.schema).default !== undefined)
          problems.push(`${key}: ${p.in} parameter ${p.name} has a default but is marked required`);
    expect(problems).toEqual([]);
    const text = doc.paths['/v1/operations/text']?.post;
    const required = (text?.parameters ?? []).filter((p) => p.in === 'query' && p.required).map((p) => p.name);
    expect(required.sort()).toEqual(['reason', 'targetType', 'ticket']);
    expect(Object.keys(text?.requestBody?.content ?? {})).toEqual(['text/plain']);
    const submit = doc.paths['/v1/operations']?.post;
    expect((submit?.parameters ?? []).filter((p) => p.in === 'query')).toEqual([]);
    expect(Object.keys(submit?.requestBody?.content ?? {}).sort()).toEqual([
      'application/json',
      'application/x-ndjson',
    ]);
  });

  it('gives every request string a format, pattern or list of values (what characters it takes)', () => {
    const problems: string[] = [];
    const walk = (s: Schema | undefined, at: string, seen: Set<string>) => {
      if (!s) return;
      if (s.$ref) {
        if (seen.has(s.$ref)) return;
        return walk(resolve(s), at, new Set([...seen, s.$ref]));
      }
      if (s.type === 'string' && !s.format && !s.pattern && !s.enum && s.const === undefined)
        problems.push(`${at}: a string without format, pattern or values`);
      for (const [k, v] of Object.entries((s.properties as Record<string, Schema> | undefined) ?? {}))
        walk(v, `${at}.${k}`, seen);
      for (const k of ['items', 'additionalProperties', 'propertyNames'] as const)
        if (s[k] && typeof s[k] === 'object') walk(s[k] as Schema, `${at}.${k}`, seen);
      for (const k of ['anyOf', 'oneOf', 'allOf'] as const)
        ((s[k] as Schema[] | undefined) ?? []).forEach((b, i) => walk(b, `${at}.${k}[${i}]`, seen));
    };
    for (const { key, op } of operations()) {
      for (const p of op.parameters ?? []) walk(p.schema, `${key} ${p.in}.${p.name}`, new Set());
      walk(op.requestBody?.content?.['application/json']?.schema, `${key} body`, new Set());
    }
    expect(problems).toEqual([]);
  });
});
