// Builds the adapter a resource type's stored config asks for. The config comes from jsonb, so it
// is validated here again even though the registry API validated it on the way in: a row edited by
// hand, written by an older version or by a server with another policy must fail loudly before
// the first destructive call. The policy (which hosts, which signing secrets) is this process's:
// the API checks it when a type is declared, every worker again when it builds the adapter.
import type pg from 'pg';
import { UnprocessableError } from '../../lib/errors.ts';
import {
  adapterConfigProblems,
  maskCredentials,
  pointer,
  validateAdapterConfig,
  type AdapterProblem,
} from './config-problems.ts';
import { ALLOW_ENV, allowlistOf, guardedLookup, hostProblem, type HostAllowlist } from './host-allowlist.ts';
import { createHttpAdapter } from './http-adapter.ts';
import { createRegistryAdapter } from './registry-adapter.ts';
import { HTTP_DEFAULTS, type AdapterConfig, type ResolvedHttpConfig } from './schemas.ts';
import { SigningSecrets } from './signing-secrets.ts';
import type { TargetAdapter } from './types.ts';

export * from './types.ts';
export { AdapterConfig, HttpAdapterConfig, RegistryAdapterConfig } from './schemas.ts';
export { DRILL_KEY_PREFIX, drillKeyFor, idempotencyKeyFor, sign, verify } from './signing.ts';
export { afterAttempts } from './http-render.ts';
export { adapterConfigProblems, validateAdapterConfig, type AdapterProblem } from './config-problems.ts';

/** What this process lets http adapters do: the hosts they may call and the secrets they sign with. */
export interface DownstreamPolicy {
  allow: HostAllowlist;
  secrets: SigningSecrets;
}
/** No host, no secret: what a process that was told nothing may do with an http adapter. */
export const DENY_ALL: DownstreamPolicy = { allow: allowlistOf([]), secrets: new SigningSecrets() };

export interface AdapterDeps {
  pool: pg.Pool;
  downstream: DownstreamPolicy;
}

const allowedText = (allow: HostAllowlist) =>
  allow.entries.length ? `${ALLOW_ENV} lists: ${allow.entries.join(', ')}` : `${ALLOW_ENV} is empty on this server`;

/** Problems of a structurally valid config under this server's policy ([] for the registry adapter). */
function policyProblems(config: AdapterConfig, policy: DownstreamPolicy): AdapterProblem[] {
  if (config.kind !== 'http') return [];
  const problems: AdapterProblem[] = [];
  const why = hostProblem(policy.allow, new URL(config.baseUrl).hostname);
  if (why)
    problems.push({
      path: ['baseUrl'],
      problem: 'host_not_allowed',
      value: maskCredentials(config.baseUrl),
      message: `baseUrl host ${why} (${allowedText(policy.allow)})`,
      allowed: [...policy.allow.entries],
    });
  const secret = policy.secrets.resolve(config.signingSecret);
  if (!secret.ok)
    problems.push({
      path: ['signingSecret'],
      problem: 'unresolvable_secret',
      ...(config.signingSecret === undefined ? {} : { value: config.signingSecret }),
      message: secret.problem,
      allowed: policy.secrets.names,
    });
  return problems;
}

/** Every problem of a declared adapter: its structure first, then (when sound) this server's policy. */
export function adapterProblems(config: unknown, policy: DownstreamPolicy): AdapterProblem[] {
  const problems = adapterConfigProblems(config);
  return problems.length ? problems : policyProblems(config as AdapterConfig, policy);
}

export function createAdapter(config: unknown, deps: AdapterDeps): TargetAdapter {
  const valid = validateAdapterConfig(config);
  if (valid.kind === 'registry') return createRegistryAdapter(deps.pool);
  const problem = policyProblems(valid, deps.downstream)[0];
  if (problem) {
    const { path, ...rest } = problem;
    const code = problem.problem === 'host_not_allowed' ? 'DOWNSTREAM_NOT_ALLOWED' : 'SIGNING_SECRET_MISSING';
    throw new UnprocessableError(code, problem.message, [{ field: pointer(path), ...rest }]);
  }
  // policyProblems found none: the secret resolves.
  const { secret } = deps.downstream.secrets.resolve(valid.signingSecret) as { ok: true; secret: string };
  const { signingSecret: _name, ...settings } = valid;
  const resolved: ResolvedHttpConfig = { ...HTTP_DEFAULTS, ...settings };
  return createHttpAdapter(resolved, { secret, lookup: guardedLookup(deps.downstream.allow) });
}
