// Registry rules: what a valid type declaration is, how tenants are upserted, and the audit
// event that goes with every change (written in the transaction that makes the change).
import type pg from 'pg';
import { NotFoundError, UnprocessableError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import { TEXT_RULES, textProblem, type TextProblem } from '../../lib/text.ts';
import type { Metrics } from '../../plugins/metrics.ts';
import { adapterProblems, type AdapterProblem, type DownstreamPolicy } from '../adapters/index.ts';
import { appendAudit } from '../audit/repository.ts';
import { LIVE_STATES } from '../operations/lifecycle-types.ts';
import { adapterInUse, omittedAdapters, TYPE_SYSTEMS_LOCK } from './adapter-in-use.ts';
import { readContact } from './contacts.ts';
import { auditHeld, heldBy, heldByTenants } from './held.ts';
import { importResources, type ImportOptions } from './import.ts';
import type { StageRow } from './rows.ts';
import * as repo from './repository.ts';
import type { ImportResult, PostTenantsBody, ResourceTypeInput, UncheckedTypeInput } from './schemas.ts';

export interface TypeProblem {
  field: string;
  problem:
    | 'duplicate_name'
    | 'invalid_regex'
    | 'unknown_type'
    | 'parent_cycle'
    | 'invalid_text'
    | 'adapter_omitted'
    | AdapterProblem['problem'];
  /** The offending value; absent for a missing field. */
  value?: unknown;
  message: string;
  /** What would be accepted, when there is a short answer (adapter kinds, fields, methods, a range). */
  allowed?: unknown;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

const fieldAt = (at: string, path: string[]) =>
  path.reduce((f, k) => (IDENTIFIER.test(k) ? `${f}.${k}` : `${f}[${JSON.stringify(k)}]`), at);

/**
 * Strings of an adapter (URLs, templates) that break the text rule: they are stored and shown,
 * and a hidden character in a template would render into every downstream request path.
 */
function adapterTextProblems(value: unknown, path: string[], depth = 0): { path: string[]; problem: TextProblem }[] {
  if (typeof value === 'string') {
    const problem = textProblem(value, 'text');
    return problem ? [{ path, problem }] : [];
  }
  // The JSON body parser bounds the depth; this bound only keeps the walk obviously finite.
  if (value === null || typeof value !== 'object' || depth > 8) return [];
  return Object.entries(value).flatMap(([k, v]) => adapterTextProblems(v, [...path, k], depth + 1));
}

/**
 * Every problem of one type's adapter, as declaration problems at `types[i].adapter.<field>`:
 * hidden characters in its strings, its structure, then this server's policy (an allowed baseUrl
 * host, a signing secret it holds).
 */
export function checkAdapter(adapter: unknown, at: string, policy: DownstreamPolicy): TypeProblem[] {
  const text = adapterTextProblems(adapter, []);
  return [
    ...text.map(({ path, problem }) => ({
      field: fieldAt(at, path),
      problem: 'invalid_text' as const,
      value: problem.escaped,
      message: `${problem.message}: ${TEXT_RULES.text}`,
      allowed: TEXT_RULES.text,
    })),
    ...adapterProblems(adapter, policy)
      // A string already reported for a hidden character needs no second, vaguer problem.
      .filter((p) => !text.some((t) => t.path.join('\0') === p.path.join('\0')))
      .map(({ path, ...p }) => ({ field: fieldAt(at, path), ...p })),
  ];
}

/** Checks references and cycles of a declaration against the stored types (pure; regexes aside). */
export function checkTypeReferences(types: UncheckedTypeInput[], stored: Map<string, string | null>): TypeProblem[] {
  const problems: TypeProblem[] = [];
  const parents = new Map(stored);
  const seen = new Set<string>();
  types.forEach((t, i) => {
    if (seen.has(t.name))
      problems.push({
        field: `types[${i}].name`,
        problem: 'duplicate_name',
        value: t.name,
        message: `Type "${t.name}" is declared twice`,
      });
    seen.add(t.name);
    parents.set(t.name, t.parentType ?? null);
  });
  types.forEach((t, i) => {
    if (t.parentType && !parents.has(t.parentType)) {
      problems.push({
        field: `types[${i}].parentType`,
        problem: 'unknown_type',
        value: t.parentType,
        message: `parentType "${t.parentType}" is not a declared type`,
      });
    }
    (t.cascadeTo ?? []).forEach((c, j) => {
      if (!parents.has(c))
        problems.push({
          field: `types[${i}].cascadeTo[${j}]`,
          problem: 'unknown_type',
          value: c,
          message: `cascadeTo "${c}" is not a declared type`,
        });
    });
    // Walk up the parent chain; coming back to this type means a cycle.
    const chain = new Set([t.name]);
    for (let p = parents.get(t.name) ?? null; p !== null; p = parents.get(p) ?? null) {
      if (chain.has(p)) {
        problems.push({
          field: `types[${i}].parentType`,
          problem: 'parent_cycle',
          value: t.parentType,
          message: `parentType of "${t.name}" leads back to "${p}"`,
        });
        break;
      }
      chain.add(p);
    }
  });
  return problems;
}

function jsRegexError(pattern: string): string | null {
  try {
    new RegExp(pattern);
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

export function registryService(deps: {
  pool: pg.Pool;
  metrics?: Pick<Metrics, 'registryRows'>;
  downstream: DownstreamPolicy;
}) {
  const { pool, metrics } = deps;
  return {
    listTypes: () => repo.listTypes(pool),

    /**
     * Upserts all types in one transaction after checking regexes, adapters, references and
     * cycles; every problem of every type is reported together and nothing is written.
     */
    async declareTypes(body: { types: UncheckedTypeInput[] }, actor: string) {
      const problems: TypeProblem[] = [];
      for (const [i, t] of body.types.entries()) {
        if (t.idPattern !== undefined) {
          // The planner checks IDs in SQL (`~`) and clients may check them in JS: both must accept it.
          const err = jsRegexError(t.idPattern) ?? (await repo.postgresAcceptsRegex(pool, t.idPattern));
          if (err)
            problems.push({
              field: `types[${i}].idPattern`,
              problem: 'invalid_regex',
              value: t.idPattern,
              message: `idPattern is not a valid regular expression: ${err}`,
            });
        }
        // Omitted: the registry adapter. The workers hold the same policy as this server (hosts,
        // secrets), so what passes here can run; a worker that differs fails the items, saying why.
        if (t.adapter !== undefined) problems.push(...checkAdapter(t.adapter, `types[${i}].adapter`, deps.downstream));
      }
      return inTransaction(pool, async (client) => {
        await repo.lockRegistryWrites(client);
        problems.push(...checkTypeReferences(body.types, await repo.typeParents(client)));
        problems.push(...(await omittedAdapters(client, body.types)));
        if (problems.length) {
          throw new UnprocessableError(
            'INVALID_TYPE_DECLARATION',
            `${problems[0]!.field}: ${problems[0]!.message}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`,
            problems,
          );
        }
        await client.query('SELECT pg_advisory_xact_lock($1)', [TYPE_SYSTEMS_LOCK]);
        const inUse = await adapterInUse(client, body.types as ResourceTypeInput[]);
        if (inUse) throw inUse;
        // Every adapter passed adapterProblems: each is an AdapterConfig.
        await repo.upsertTypes(client, body.types as ResourceTypeInput[]);
        await appendAudit(client, {
          actor,
          action: 'registry.types.put',
          outcome: 'accepted',
          payload: { types: body.types.map((t) => t.name) },
        });
        return { items: await repo.listTypes(client) };
      });
    },

    async upsertTenants(body: PostTenantsBody, actor: string) {
      const seen = new Map<string, number>();
      const duplicates: { field: string; id: string; firstIndex: number }[] = [];
      body.tenants.forEach((t, i) => {
        const first = seen.get(t.id);
        if (first === undefined) seen.set(t.id, i);
        else if (duplicates.length < 100) duplicates.push({ field: `tenants[${i}].id`, id: t.id, firstIndex: first });
      });
      if (duplicates.length)
        throw new UnprocessableError(
          'DUPLICATE_TENANT_ID',
          `Tenant ${duplicates[0]!.id} appears more than once; nothing was written`,
          duplicates,
        );
      const contacts = body.tenants
        .filter((t) => t.contact !== undefined)
        .map((t) => ({ tenantId: t.id, contact: t.contact }));
      const result = await inTransaction(pool, async (client) => {
        await repo.lockRegistryWrites(client);
        // Before the upsert: which tenants it protects is what is not protected yet.
        const protecting = body.tenants.filter((t) => t.protected === true).map((t) => t.id);
        const found = protecting.length ? await heldBy(client, heldByTenants(protecting, LIVE_STATES)) : null;
        const held = found?.held;
        const { inserted, updated, protection } = await repo.upsertTenants(client, body.tenants);
        const contactsChanged = await repo.upsertContacts(client, contacts);
        const r = {
          received: body.tenants.length,
          inserted,
          updated,
          unchanged: body.tenants.length - inserted - updated,
          contactsChanged,
          ...(held ? { held } : {}),
        };
        await appendAudit(client, {
          actor,
          action: 'registry.tenants.upsert',
          outcome: 'accepted',
          payload: { ...r, ...(protection ? { protection } : {}) },
        });
        await auditHeld(client, actor, 'registry.tenants.upsert', found?.operations ?? []);
        return r;
      });
      metrics?.registryRows.inc({ kind: 'tenant' }, result.inserted + result.updated);
      return result;
    },

    async getTenant(id: string) {
      const tenant = await repo.getTenant(pool, id);
      if (!tenant) throw new NotFoundError('Tenant', id);
      return tenant;
    },

    /** A tenant's contact; the read is audited in the same transaction (contact data is personal). */
    async getContact(tenantId: string, actor: string) {
      return inTransaction(pool, async (client) => {
        const contact = await readContact(client, tenantId);
        if (!contact) throw new NotFoundError('Tenant', tenantId);
        await appendAudit(client, {
          actor,
          action: 'registry.contact.read',
          outcome: 'info',
          payload: { tenantId, hasContact: contact.contact !== null },
        });
        return contact;
      });
    },

    async importResources(rows: AsyncIterable<StageRow[]>, opts: ImportOptions): Promise<ImportResult> {
      const result = await importResources(pool, rows, opts);
      metrics?.registryRows.inc({ kind: 'resource' }, result.inserted + result.updated);
      return result;
    },

    async getResource(id: string) {
      const resource = await repo.getResource(pool, id);
      if (!resource) throw new NotFoundError('Resource', id);
      return resource;
    },
  };
}

export type RegistryService = ReturnType<typeof registryService>;
