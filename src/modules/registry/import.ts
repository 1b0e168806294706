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
 * (a probe's purge sent both of one side by side). The registry has none before the import, so a
 * new loop holds a row whose link the import changes and whose parent has a parent: such rows
 * (registry_loop_starts, none in a routine re-import) are where loops may start. Each walks up
 * (the upload's row winning over the registry's, as for the checks above) only to the next such
 * row or a top, so a chain imported whole costs a step per row, not one walk to its top per row
 * (that was quadratic: a probe's 3,000-folder chain took 200 s); the loops are then found among
 * these links (parentLoops).
 */
const LOOP_LINKS = `
  WITH RECURSIVE up(start, id, path) AS (
    SELECT st.id, st.parent_id, ARRAY[st.id] FROM (SELECT DISTINCT ON (id) id, parent_id FROM registry_loop_starts) st
    UNION ALL
    SELECT u.start, n.next, u.path || u.id
    FROM up u
    CROSS JOIN LATERAL (
      SELECT coalesce((SELECT ps.parent_id FROM registry_stage ps WHERE ps.id = u.id LIMIT 1),
        (SELECT pr.parent_id FROM resources pr WHERE pr.id = u.id
          AND NOT EXISTS (SELECT 1 FROM registry_stage ps WHERE ps.id = u.id))) AS next
    ) n
    WHERE NOT EXISTS (SELECT 1 FROM registry_loop_starts x WHERE x.id = u.id) AND n.next IS NOT NULL
  )
  SELECT u.start, u.id AS reached, u.path FROM up u WHERE EXISTS (SELECT 1 FROM registry_loop_starts x WHERE x.id = u.id)`;

/**
 * The loops among links start → next start (each with the IDs from its start to before the next):
 * every start on one, with the loop from it ("a → b → a"). Links not on a loop lead into one or to
 * a top.
 */
/** How many resources of a loop its report names. */
const LOOP_SHOWN = 20;

export function parentLoops(links: Map<string, { reached: string; path: string[] }>): Map<string, string> {
  const out = new Map<string, string>();
  const done = new Set<string>();
  for (const first of links.keys()) {
    const seen: string[] = [];
    const at = new Map<string, number>();
    let x: string | undefined = first;
    while (x !== undefined && !done.has(x) && !at.has(x)) {
      at.set(x, seen.length);
      seen.push(x);
      x = links.get(x)?.reached;
    }
    if (x !== undefined && at.has(x)) {
      const loop = seen.slice(at.get(x));
      // The whole loop, or its first LOOP_SHOWN resources and its length: a loop of n rows said in
      // full on each of them is n² (a 100,000-row loop ran the API out of memory).
      const ids = loop.flatMap((s) => links.get(s)!.path);
      const from = new Map(ids.map((id, i) => [id, i]));
      loop.forEach((start) => {
        const k = from.get(start)!;
        const head = ids.slice(k, k + LOOP_SHOWN);
        const shown = [...head, ...ids.slice(0, Math.min(k, LOOP_SHOWN - head.length))];
        out.set(
          start,
          ids.length <= LOOP_SHOWN
            ? [...shown, start].join(' → ')
            : `${shown.join(' → ')} → … (${ids.length} in the loop)`,
        );
      });
    }
    for (const s of seen) done.add(s);
  }
  return out;
}

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
  // The rows whose link is new are also where a loop of parents can start (PARENT_LOOPS): those
  // whose parent has a parent of its own.
  await client.query(`CREATE TEMP TABLE registry_loop_starts (pos int, id text, parent_id text) ON COMMIT DROP`);
  await client.query(`
    WITH named AS MATERIALIZED (
      SELECT s.pos, s.id, s.type, s.parent_id FROM registry_stage s
      LEFT JOIN resources cur ON cur.id = s.id
      WHERE s.parent_id IS NOT NULL
        AND (cur.id IS NULL OR cur.parent_id IS DISTINCT FROM s.parent_id OR cur.type <> s.type)
    ), joined AS MATERIALIZED (
      SELECT s.pos, s.id, s.type, s.parent_id, t.parent_type, ps.id IS NOT NULL AS staged,
        coalesce(ps.type, pr.type) AS p_type, pr.id IS NOT NULL AS stored,
        CASE WHEN ps.id IS NOT NULL THEN ps.parent_id ELSE pr.parent_id END AS grandparent
      FROM named s
      LEFT JOIN resource_types t ON t.name = s.type
      LEFT JOIN registry_stage ps ON ps.id = s.parent_id
      LEFT JOIN resources pr ON pr.id = s.parent_id
    ), starts AS (
      INSERT INTO registry_loop_starts (pos, id, parent_id)
      SELECT pos, id, parent_id FROM joined WHERE parent_id <> id AND grandparent IS NOT NULL
    )
    INSERT INTO registry_problems (pos, id, problem, value)
    SELECT s.pos, s.id, v.problem, v.value
    FROM joined s
    CROSS JOIN LATERAL (VALUES
      ('parent_is_self', s.parent_id, s.parent_id = s.id),
      ('unknown_parent', s.parent_id, s.parent_id <> s.id AND NOT s.staged AND NOT s.stored),
      ('parent_type_mismatch', s.p_type || ' (' || s.parent_id || '); ' || s.type || ' needs ' || s.parent_type,
        s.parent_id <> s.id AND s.parent_type IS NOT NULL AND s.p_type <> s.parent_type)
    ) AS v(problem, value, bad)
    WHERE v.bad`);
  // The stage has no index, and the walk looks rows up by ID: one is built only when there is a walk.
  if ((await client.query('SELECT 1 FROM registry_loop_starts LIMIT 1')).rowCount) {
    await client.query('CREATE INDEX ON registry_stage (id)');
    await client.query('CREATE INDEX ON registry_loop_starts (id)');
    await client.query('ANALYZE registry_stage');
    await client.query('ANALYZE registry_loop_starts');
    const links = await client.query<{ start: string; reached: string; path: string[] }>(LOOP_LINKS);
    const loops = parentLoops(new Map(links.rows.map((l) => [l.start, { reached: l.reached, path: l.path }])));
    if (loops.size)
      await client.query(
        `INSERT INTO registry_problems (pos, id, problem, value)
         SELECT st.pos, st.id, 'parent_loop', l.value FROM unnest($1::text[], $2::text[]) AS l(id, value)
         JOIN registry_loop_starts st ON st.id = l.id`,
        [[...loops.keys()], [...loops.values()]],
      );
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
