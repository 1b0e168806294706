// Structural checks of an adapter config: what a valid declaration is, each problem naming its
// field and what is allowed. The same rules run when a type is declared and when a stored row is
// built into an adapter (a row edited by hand or written by an older version). Whether this
// server may use the config (its host, its signing secret) is index.ts's policy check.
import { Value } from 'typebox/value';
import { UnprocessableError } from '../../lib/errors.ts';
import {
  ADAPTER_KINDS,
  BASE_URL_PATTERN,
  HttpAdapterConfig,
  HTTP_LIMITS,
  ITEM_PLACEHOLDERS,
  MAX_TEMPLATE_LENGTH,
  PROBE_PLACEHOLDERS,
  RegistryAdapterConfig,
  REQUIRED_TEMPLATES,
  TEMPLATE_METHODS,
  type AdapterConfig,
} from './schemas.ts';
import { SECRET_NAME_PATTERN } from './signing-secrets.ts';

const SCHEMAS = { http: HttpAdapterConfig, registry: RegistryAdapterConfig } as const;

/** One thing wrong with an adapter config, at `path` inside it ([] is the config itself). */
export interface AdapterProblem {
  path: string[];
  problem:
    | 'invalid_value'
    | 'unknown_kind'
    | 'missing_field'
    | 'unknown_field'
    | 'invalid_url'
    | 'invalid_method'
    | 'invalid_template'
    | 'unknown_placeholder'
    | 'missing_placeholder'
    | 'out_of_range'
    | 'host_not_allowed'
    | 'unresolvable_secret';
  /** The offending value (absent for a missing field); credentials in a URL are masked. */
  value?: unknown;
  message: string;
  /** What would be accepted: kinds, fields, methods, placeholders or a range. */
  allowed?: unknown;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const list = (xs: readonly string[]) => xs.join(', ');
const braces = (names: readonly string[]) => names.map((n) => `{${n}}`);
/** Replaces the user info of a URL-looking string, so that a refusal never echoes a password. */
export const maskCredentials = (url: string) => url.replace(/^([a-z][a-z0-9+.-]*:\/*)[^/?#]*@/i, '$1***@');

function baseUrlProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute URL: scheme://host[:port][/base/path], e.g. https://apps.internal or http://127.0.0.1:8080/api';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return `scheme must be http or https, not ${url.protocol.slice(0, -1)}`;
  if (!url.hostname) return 'needs a host';
  if (url.username || url.password || /^[a-z]+:\/\/[^/?#]*@/i.test(value))
    return 'must not contain credentials (user:password@); requests are authenticated by their signature';
  if (url.search || value.includes('?')) return 'must not have a query; put it in the request templates';
  if (url.hash || value.includes('#')) return 'must not have a fragment';
  if (!new RegExp(BASE_URL_PATTERN).test(value))
    return 'must be scheme://host[:port][/base/path] with no whitespace or backslash';
  const dots = dotSegment(value.replace(/^[a-z]+:\/\/[^/]*/i, ''));
  if (dots) return `must not have the dot segment ${JSON.stringify(dots)} in its path (it would be resolved away)`;
  return null;
}

function templateProblem(
  value: string,
  placeholders: readonly string[],
): Pick<AdapterProblem, 'problem' | 'message' | 'allowed'> | null {
  const space = value.indexOf(' ');
  const method = space < 0 ? value : value.slice(0, space);
  const path = space < 0 ? '' : value.slice(space + 1);
  if (!(TEMPLATE_METHODS as readonly string[]).includes(method))
    return {
      problem: 'invalid_method',
      message: `method ${JSON.stringify(method)} is not one of ${list(TEMPLATE_METHODS)} (write "METHOD /path")`,
      allowed: [...TEMPLATE_METHODS],
    };
  if (!path.startsWith('/') || /\s/.test(path))
    return {
      problem: 'invalid_template',
      message: 'must be "METHOD /path": one space, then a path that starts with / and has no whitespace',
    };
  const unknown = [...path.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]!).filter((n) => !placeholders.includes(n));
  if (unknown.length)
    return {
      problem: 'unknown_placeholder',
      message: `unknown placeholder ${list(braces([...new Set(unknown)]))}; allowed: ${list(braces(placeholders))}`,
      allowed: braces(placeholders),
    };
  if (/[{}]/.test(path.replace(/\{[^{}]*\}/g, '')))
    return { problem: 'invalid_template', message: 'has an unmatched { or }' };
  const dots = dotSegment(path);
  if (dots)
    return {
      problem: 'invalid_template',
      message: `has the dot segment ${JSON.stringify(dots)}: a receiver resolves it, so the call would address another path than the one written (for every resource alike)`,
    };
  return null;
}

/**
 * A GET carries no body (the other methods send the item, its ID included, in theirs): without
 * {id} in its path or query every resource of the type would be read from one URL, and a restore
 * would send that one document back as each resource's snapshot (a new-user trial had it accepted).
 */
function getWithoutId(value: string): Pick<AdapterProblem, 'problem' | 'message' | 'allowed'> | null {
  if (!value.startsWith('GET ') || value.includes('{id}')) return null;
  return {
    problem: 'missing_placeholder',
    message:
      'a GET sends no body, so it must name the item: put {id} in its path or query (every resource would be read from one URL)',
    allowed: ['{id}'],
  };
}

/**
 * The first `.` or `..` segment (also percent-encoded, `%2e%2E`) of a template's path, or of a
 * baseUrl's path; a backslash counts as a separator, as URL parsers read it in http(s) URLs.
 */
function dotSegment(path: string): string | null {
  const q = path.indexOf('?');
  for (const segment of (q < 0 ? path : path.slice(0, q)).split(/[/\\]/)) {
    const plain = segment.replace(/%2e/gi, '.');
    if (plain === '.' || plain === '..') return segment;
  }
  return null;
}

function httpProblems(config: Record<string, unknown>): AdapterProblem[] {
  const problems: AdapterProblem[] = [];
  const fields = Object.keys(HttpAdapterConfig.properties);
  for (const key of Object.keys(config))
    if (!fields.includes(key))
      problems.push({
        path: [key],
        problem: 'unknown_field',
        message: `unknown field "${key}" of an http adapter; allowed: ${list(fields)}`,
        allowed: fields,
      });

  const text = (
    key: string,
    required: boolean,
    check: (v: string) => Omit<AdapterProblem, 'path' | 'value'> | null,
  ) => {
    const value = config[key];
    if (value === undefined) {
      if (required) problems.push({ path: [key], problem: 'missing_field', message: `${key} is required` });
      return;
    }
    if (typeof value !== 'string') {
      problems.push({ path: [key], problem: 'invalid_value', value, message: 'must be a string' });
      return;
    }
    const found =
      value.length > MAX_TEMPLATE_LENGTH
        ? { problem: 'invalid_value' as const, message: `must be at most ${MAX_TEMPLATE_LENGTH} characters` }
        : check(value);
    if (found) problems.push({ path: [key], value: key === 'baseUrl' ? maskCredentials(value) : value, ...found });
  };

  text('baseUrl', true, (v) => {
    const message = baseUrlProblem(v);
    return message ? { problem: 'invalid_url', message: `baseUrl ${message}` } : null;
  });
  text('signingSecret', false, (v) =>
    new RegExp(SECRET_NAME_PATTERN).test(v)
      ? null
      : {
          problem: 'invalid_value',
          message:
            'signingSecret must name a secret: lower-case letters and digits in words joined by single hyphens, at most 64 characters, not ending in -file (e.g. "apps-prod", set as BLASTGATE_SECRET_APPS_PROD)',
        },
  );
  for (const key of REQUIRED_TEMPLATES)
    text(key, true, (v) => templateProblem(v, ITEM_PLACEHOLDERS) ?? getWithoutId(v));
  text('snapshotBatch', false, (v) => {
    if (!v.startsWith('POST '))
      return {
        problem: 'invalid_method',
        message: 'snapshotBatch must be "POST /path": a bulk read sends the items in its body',
        allowed: ['POST'],
      };
    const found = templateProblem(v, []);
    if (found?.problem !== 'unknown_placeholder') return found;
    return { ...found, message: 'snapshotBatch takes no placeholders: the items are sent in the request body' };
  });
  text('probe', false, (v) => {
    const found = templateProblem(v, PROBE_PLACEHOLDERS);
    if (found?.problem !== 'unknown_placeholder') return found;
    return { ...found, message: `${found.message} (a probe is about a tenant, not an item)` };
  });

  for (const [key, { minimum, maximum }] of Object.entries(HTTP_LIMITS)) {
    const value = config[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isInteger(value))
      problems.push({
        path: [key],
        problem: 'invalid_value',
        value,
        message: `${key} must be an integer from ${minimum} to ${maximum}`,
        allowed: { minimum, maximum },
      });
    else if (value < minimum || value > maximum)
      problems.push({
        path: [key],
        problem: 'out_of_range',
        value,
        message: `${key} must be from ${minimum} to ${maximum}, got ${value}`,
        allowed: { minimum, maximum },
      });
  }
  return problems;
}

/**
 * Every problem of an adapter config, each naming its field and what is allowed ([] when it is
 * valid). The rules are those of the schemas in ./schemas.ts, plus a parse of baseUrl with `new URL`.
 */
export function adapterConfigProblems(config: unknown): AdapterProblem[] {
  if (!isRecord(config))
    return [
      {
        path: [],
        problem: 'invalid_value',
        value: config,
        message: `must be an object with a kind: one of ${list(ADAPTER_KINDS)}`,
        allowed: [...ADAPTER_KINDS],
      },
    ];
  const kind = config.kind;
  if (kind === undefined)
    return [
      {
        path: ['kind'],
        problem: 'missing_field',
        message: `kind is required: one of ${list(ADAPTER_KINDS)}`,
        allowed: [...ADAPTER_KINDS],
      },
    ];
  if (kind !== 'http' && kind !== 'registry')
    return [
      {
        path: ['kind'],
        problem: 'unknown_kind',
        value: kind,
        message: `unknown adapter kind ${JSON.stringify(kind)}; allowed: ${list(ADAPTER_KINDS)}`,
        allowed: [...ADAPTER_KINDS],
      },
    ];
  const problems =
    kind === 'http'
      ? httpProblems(config)
      : Object.keys(config)
          .filter((k) => k !== 'kind')
          .map((k): AdapterProblem => ({
            path: [k],
            problem: 'unknown_field',
            message: `unknown field "${k}": a registry adapter has only a kind`,
            allowed: ['kind'],
          }));
  // The schema is what the OpenAPI document promises: if a rule above ever missed something it
  // says, refuse it anyway.
  if (!problems.length && !Value.Check(SCHEMAS[kind], config))
    for (const e of Value.Errors(SCHEMAS[kind], config))
      problems.push({
        path: e.instancePath.split('/').slice(1),
        problem: 'invalid_value',
        message: e.message,
      });
  return problems;
}

/** `/baseUrl`, `/`: where a problem is, as a JSON pointer inside the config. */
export const pointer = (path: string[]) => `/${path.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;

/**
 * Checks a stored config and returns it typed; throws ADAPTER_CONFIG_INVALID naming every
 * problem. The same rules as when the type is declared, for rows written by hand or by an older
 * version.
 */
export function validateAdapterConfig(config: unknown): AdapterConfig {
  const problems = adapterConfigProblems(config);
  if (!problems.length) return config as AdapterConfig;
  const details = problems.map(({ path, ...p }) => ({ field: pointer(path), ...p }));
  const first = details[0]!;
  const more = details.length > 1 ? ` (and ${details.length - 1} more)` : '';
  const kind = isRecord(config) ? config.kind : undefined;
  throw new UnprocessableError(
    'ADAPTER_CONFIG_INVALID',
    kind === 'http' || kind === 'registry'
      ? `Invalid ${kind} adapter config: ${first.field} ${first.message}${more}`
      : `Adapter config needs kind ${ADAPTER_KINDS.map((k) => JSON.stringify(k)).join(' or ')}: ${first.message}`,
    details,
  );
}
