// Builds the adapter a resource type's stored config asks for. The config comes from jsonb, so it
// is validated here again even though the registry API validated it on the way in: a row edited by
// hand or written by an older version must fail loudly before the first destructive call.
import type pg from 'pg';
import { Value } from 'typebox/value';
import { UnprocessableError } from '../../lib/errors.ts';
import { createHttpAdapter } from './http-adapter.ts';
import { createRegistryAdapter } from './registry-adapter.ts';
import {
  HTTP_DEFAULTS,
  HttpAdapterConfig,
  RegistryAdapterConfig,
  type AdapterConfig,
  type ResolvedHttpConfig,
} from './schemas.ts';
import type { TargetAdapter } from './types.ts';

export * from './types.ts';
export { AdapterConfig, HttpAdapterConfig, RegistryAdapterConfig } from './schemas.ts';
export { idempotencyKeyFor, sign, verify } from './signing.ts';

export interface AdapterDeps {
  pool: pg.Pool;
  /** BLASTGATE_SIGNING_SECRET; required by the HTTP adapter, which never sends unsigned calls. */
  signingSecret: string | undefined;
}

const SCHEMAS = { http: HttpAdapterConfig, registry: RegistryAdapterConfig } as const;

/**
 * Checks a config and returns it typed. Validates against the schema of its own `kind` only, so
 * the errors name the field that is wrong instead of every branch of the union.
 */
export function validateAdapterConfig(config: unknown): AdapterConfig {
  const kind = (config as { kind?: unknown } | null)?.kind;
  if (kind !== 'http' && kind !== 'registry') {
    throw new UnprocessableError('ADAPTER_CONFIG_INVALID', 'Adapter config needs kind "http" or "registry"', [
      { field: '/kind', message: `got ${JSON.stringify(kind)}` },
    ]);
  }
  const schema = SCHEMAS[kind];
  if (!Value.Check(schema, config)) {
    const details = Value.Errors(schema, config).map((e) => ({
      field: e.instancePath || '/',
      message: e.message,
      ...(e.keyword === 'additionalProperties' ? { params: e.params } : {}),
    }));
    const first = details[0];
    throw new UnprocessableError(
      'ADAPTER_CONFIG_INVALID',
      `Invalid ${kind} adapter config${first ? `: ${first.field} ${first.message}` : ''}`,
      details,
    );
  }
  return config;
}

export function createAdapter(config: unknown, deps: AdapterDeps): TargetAdapter {
  const valid = validateAdapterConfig(config);
  if (valid.kind === 'registry') return createRegistryAdapter(deps.pool);
  if (!deps.signingSecret) {
    throw new UnprocessableError(
      'SIGNING_SECRET_MISSING',
      'An http adapter needs BLASTGATE_SIGNING_SECRET: Blastgate never sends unsigned destructive calls',
    );
  }
  const resolved: ResolvedHttpConfig = { ...HTTP_DEFAULTS, ...valid };
  return createHttpAdapter(resolved, deps.signingSecret);
}
