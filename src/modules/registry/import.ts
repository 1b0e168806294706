// Bulk resource import, set-based: rows are COPYed into a TEMP staging table inside one
// transaction, validated with a few set-based queries, then merged (merge.ts). Any problem rolls
// the whole import back: nothing is written, and the client gets a report of the offending rows.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { BadRequestError, UnprocessableError } from '../../lib/errors.ts';
import { inTransaction } from '../../lib/sql.ts';
import { appendAudit } from '../audit/repository.ts';
import { auditHeld } from './held.ts';
import { mergeStage } from './merge.ts';
import { lockRegistryWrites, protectionChanges } from './repository.ts';
import type { StageRow } from './rows.ts';
import { RESOURCE_STATES, type ImportResult } from './schemas.ts';

/** Offending rows listed in a rejection (the counts cover all of them). */
export const MAX_OFFENDERS = 100;

export interface ImportOptions {
  actor: string;
  /** `line`: NDJSON, reported as 1-based line numbers; `index`: JSON array, 0-based indexes. */
  position: 'line' | 'index';
}

// COPY text format: tab-separated, \N is NULL. Control characters were refused in rows.ts, so
// only the backslash needs escaping.
const esc = (v: string) => (v.includes('\\') ? v.replaceAll('\\', '\\\\') : v);
const nul = (v: string | null) => (v === null ? '\\N' : esc(v));
const copyLine = (r: StageRow) =>
  `${r.pos}\t${esc(r.id)}\t${esc(r.type)}\t${esc(r.tenantId)}\t${nul(r.parentId)}\t${nul(r.state)}\t${r.protected === null ? '\\N' : r.protected ? 't' : 'f'}\t${r.parentGiven ? 't' : 'f'}\n`;

async function copyIntoStage(client: pg.PoolClient, batches: AsyncIterable<StageRow[]>): Promise<number> {
  let received = 0;
  async function* encode() {
    for await (const batch of batches) {
      received += batch.length;
      let chunk = '';
      for (const r of batch) chunk += copyLine(r);
      yield Buffer.from(chunk);
    }
  }
  const copy = client.query(
    copyFrom('COPY registry_stage (pos, id, type, tenant_id, parent_id, state, protected, parent_given) FROM STDIN'),
  );
  // If the body turns out bad half-way, pipeline destroys the COPY stream, which sends CopyFail:
  // Postgres aborts the COPY, and inTransaction rolls the transaction back.
  await pipeline(Readable.from(encode()), copy);
  return received;
}

const STATES_SQL = RESOURCE_STATES.map((s) => `'${s}'`).join(', ');

/**
 * A loop of parents (a → b → a), in the upload or through the registry: a cascade, a purge's
 * children-first order and a restore's parents-first order all walk a family, and a loop has no top
 * (a probe's purge sent both of one side by side). Only a type with no parentType can close one: a
 * loop through declared parentTypes is a loop of types, refused when they are declared. So the walk
 * starts from staged rows of such a type that name a parent, which a routine import has none of;
 * the upload's row wins over the registry's at each step, as for the checks above.
 */
const PARENT_LOOPS = `
  WITH RECURSIVE up(start, pos, id, path) AS (
    SELECT s.id, s.pos, s.parent_id, ARRAY[s.id, s.parent_id]
    FROM registry_stage s JOIN resource_types t ON t.name = s.type
    WHERE s.parent_id IS NOT NULL AND s.parent_id <> s.id AND t.parent_type IS NULL
    UNION ALL
    SELECT u.start, u.pos, n.next, u.path || n.next
    FROM up u
    CROSS JOIN LATERAL (
      SELECT coalesce((SELECT ps.parent_id FROM registry_stage ps WHERE ps.id = u.id LIMIT 1),
        (SELECT pr.parent_id FROM resources pr WHERE pr.id = u.id
          AND NOT EXISTS (SELECT 1 FROM registry_stage ps WHERE ps.id = u.id))) AS next
    ) n
    -- Ends at the top, back at the start, or in a loop above the start (reported from its own rows).
    WHERE u.id <> u.start AND n.next IS NOT NULL AND NOT (n.next = ANY(u.path[2:])) AND cardinality(u.path) < 1000
  )
  INSERT INTO registry_problems (pos, id, problem, value)
  SELECT DISTINCT ON (pos) pos, start, 'parent_loop', array_to_string(path, ' → ') FROM up WHERE id = start`;

/** Set-based validation of the staged rows; throws REGISTRY_REJECTED with a report. */
async function rejectProblems(
  client: pg.PoolClient,
  received: number,
  position: ImportOptions['position'],
): Promise<void> {
  await client.query(`CREATE TEMP TABLE registry_problems (pos int, id text, problem text, value text) ON COMMIT DROP`);
  // One pass for the per-row checks. The outer WHERE is evaluated at the join, before the LATERAL
  // split, so a row without problems costs two hash probes (types, tenants) and one regex match.
  await client.query(`
    INSERT INTO registry_problems (pos, id, problem, value)
    SELECT s.pos, s.id, v.problem, v.value
    FROM registry_stage s
    LEFT JOIN resource_types t ON t.name = s.type
    LEFT JOIN tenants n ON n.id = s.tenant_id
    CROSS JOIN LATERAL (VALUES
      ('unknown_type', s.type, t.name IS NULL),
      ('unknown_tenant', s.tenant_id, n.id IS NULL),
      ('bad_state', s.state, s.state NOT IN (${STATES_SQL})),
      ('pattern_mismatch', t.id_pattern, s.id !~ t.id_pattern)
    ) AS v(problem, value, bad)
    WHERE (t.name IS NULL OR n.id IS NULL OR s.state NOT IN (${STATES_SQL}) OR s.id !~ t.id_pattern) AND v.bad`);
  // A named parent must be a resource (of this import, which wins, or of the registry), not the row
  // itself, and of the type's declared parentType: an app under an app, or under a site that does not
  // exist, was accepted, and cascades then took the wrong things or nothing (a trial). Hash joins:
  // the stage has no index, and a lookup per row would scan it once per row.
  // Only rows whose parent (or type) is new are checked: a routine re-import of the same registry
  // skips the two joins (~3 of a 1M-row re-import's 12 s when every row was checked).
  await client.query(`
    WITH named AS MATERIALIZED (
      SELECT s.pos, s.id, s.type, s.parent_id FROM registry_stage s
      LEFT JOIN resources cur ON cur.id = s.id
      WHERE s.parent_id IS NOT NULL
        AND (cur.id IS NULL OR cur.parent_id IS DISTINCT FROM s.parent_id OR cur.type <> s.type)
    )
    INSERT INTO registry_problems (pos, id, problem, value)
    SELECT s.pos, s.id, v.problem, v.value
    FROM named s
    LEFT JOIN resource_types t ON t.name = s.type
    LEFT JOIN registry_stage ps ON ps.id = s.parent_id
    LEFT JOIN resources pr ON pr.id = s.parent_id
    CROSS JOIN LATERAL (VALUES
      ('parent_is_self', s.parent_id, s.parent_id = s.id),
      ('unknown_parent', s.parent_id, s.parent_id <> s.id AND ps.id IS NULL AND pr.id IS NULL),
      ('parent_type_mismatch', coalesce(ps.type, pr.type) || ' (' || s.parent_id || '); ' || s.type || ' needs ' || t.parent_type,
        s.parent_id <> s.id AND t.parent_type IS NOT NULL AND coalesce(ps.type, pr.type) <> t.parent_type)
    ) AS v(problem, value, bad)
    WHERE v.bad`);
  // The stage has no index, and the walk looks rows up by ID: one is built only when there is a walk.
  const walks = await client.query(
    `SELECT 1 FROM registry_stage s JOIN resource_types t ON t.name = s.type
     WHERE s.parent_id IS NOT NULL AND s.parent_id <> s.id AND t.parent_type IS NULL LIMIT 1`,
  );
  if (walks.rowCount) {
    await client.query('CREATE INDEX ON registry_stage (id)');
    await client.query('ANALYZE registry_stage');
    await client.query(PARENT_LOOPS);
  }
  // Where the first one is, counted as the offenders' own position is (a 0-based index, or a line).
  const offset = position === 'line' ? 0 : 1;
  await client.query(
    `INSERT INTO registry_problems (pos, id, problem, value)
     SELECT s.pos, s.id, 'duplicate_id', 'first at ' || $1 || ' ' || (d.first_pos - $2)
     FROM (SELECT id, min(pos) AS first_pos FROM registry_stage GROUP BY id HAVING count(*) > 1) d
     JOIN registry_stage s ON s.id = d.id AND s.pos > d.first_pos`,
    [position, offset],
  );
  const counts = await client.query<{ problem: string; n: number }>(
    'SELECT problem, count(*)::int AS n FROM registry_problems GROUP BY problem ORDER BY problem',
  );
  if (counts.rows.length === 0) return;
  const first = await client.query<{ pos: number; id: string; problem: string; value: string | null }>(
    'SELECT pos, id, problem, value FROM registry_problems ORDER BY pos, problem LIMIT $1',
    [MAX_OFFENDERS],
  );
  const rejectedRows = (
    await client.query<{ n: number }>('SELECT count(DISTINCT pos)::int AS n FROM registry_problems')
  ).rows[0]!.n;
  throw new UnprocessableError(
    'REGISTRY_REJECTED',
    `${rejectedRows} of ${received} rows were rejected; nothing was written`,
    {
      received,
      rejectedRows,
      counts: Object.fromEntries(counts.rows.map((c) => [c.problem, c.n])),
      offenders: first.rows.map((r) => ({ [position]: r.pos - offset, id: r.id, problem: r.problem, value: r.value })),
    },
  );
}

/** Imports rows in one transaction: all of them, or (on any problem) none. */
export async function importResources(
  pool: pg.Pool,
  batches: AsyncIterable<StageRow[]>,
  opts: ImportOptions,
): Promise<ImportResult> {
  return inTransaction(pool, async (client) => {
    // Enough memory for the duplicate check's hash aggregate over 1M IDs and the merge joins to
    // stay off disk; for this transaction only.
    await client.query(`SET LOCAL work_mem = '256MB'`);
    // TEMP: no WAL, private to this session, dropped at commit or rollback.
    await client.query(`CREATE TEMP TABLE registry_stage (pos int NOT NULL, id text NOT NULL, type text NOT NULL,
      tenant_id text NOT NULL, parent_id text, state text, protected boolean, parent_given boolean NOT NULL)
      ON COMMIT DROP`);
    const received = await copyIntoStage(client, batches);
    if (received === 0) throw new BadRequestError('EMPTY_IMPORT', 'The upload contains no resources');
    // Temp tables get no autovacuum statistics; without them the planner assumes a tiny table.
    await client.query('ANALYZE registry_stage');
    // From here on, types, tenants and resources must not change under us.
    await lockRegistryWrites(client);
    await rejectProblems(client, received, opts.position);
    // Rows that name their protection are few in a routine sync (omitted keeps it): one primary-key
    // lookup each.
    const protection = await protectionChanges(
      client,
      `SELECT s.id, s.protected FROM registry_stage s
       LEFT JOIN LATERAL (SELECT r.protected FROM resources r WHERE r.id = s.id) r ON true
       WHERE s.protected IS NOT NULL AND s.protected IS DISTINCT FROM coalesce(r.protected, false)`,
    );
    const { inserted, updated, bulk, held, heldOps } = await mergeStage(client);
    const result: ImportResult = {
      received,
      inserted,
      updated,
      unchanged: received - inserted - updated,
      ...(held ? { held } : {}),
    };
    await appendAudit(client, {
      actor: opts.actor,
      action: 'registry.import',
      outcome: 'accepted',
      payload: {
        ...result,
        format: opts.position === 'line' ? 'ndjson' : 'json',
        bulk,
        ...(protection ? { protection } : {}),
      },
    });
    await auditHeld(client, opts.actor, 'registry.import', heldOps);
    return result;
  });
}
