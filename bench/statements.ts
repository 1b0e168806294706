// `npm run bench -- statements`: where PostgreSQL's time goes in a waves run. The bench's own
// PostgreSQL is restarted with pg_stat_statements loaded, the `waves` section runs (1 process, then
// 2 worker processes; BENCH_STATEMENTS_OF=efficiency runs that section instead: the HTTP adapter's
// path), and the statements are listed by total execution time with their cost per item executed.
// Execution time includes waits (locks, and CPU the 2 cores gave to others), so the per-item
// figures add up to more than "PostgreSQL CPU per item": read them as shares, not as CPU.
import { join } from 'node:path';
import { asPostgres } from '../src/embedded/local-postgres.ts';
import { ensureBinaries } from '../src/embedded/local-services.ts';
import { benchExecution } from './execution.ts';
import { sql } from './support.ts';

const TOP = 15;

export async function benchStatements(
  services: { databaseUrl: string; redisUrl: string; dir: string },
  freshDatabase: (name: string) => Promise<string>,
) {
  await sql(services.databaseUrl, `ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
  // -l: the new server writes to the log file, not to this process's pipes (which would then
  // never close, and the restart would never return).
  const pgData = join(services.dir, 'pg');
  const restarted = asPostgres(ensureBinaries().pgCtl, [
    '-D',
    pgData,
    '-l',
    join(pgData, 'server.log'),
    '-m',
    'fast',
    '-w',
    'restart',
  ]);
  if (!restarted.ok) throw new Error(`could not restart the bench's PostgreSQL:\n${restarted.out}`);
  const databaseUrl = await freshDatabase('bench_statements');
  await sql(databaseUrl, 'CREATE EXTENSION pg_stat_statements; SELECT pg_stat_statements_reset()');
  const section = process.env.BENCH_STATEMENTS_OF === 'efficiency' ? 'efficiency' : 'waves';
  const waves = await benchExecution({ ...services, databaseUrl }, [section]);
  // Every item the runs executed (the efficiency runs' warm-ups included).
  const executed = await sql(
    databaseUrl,
    `SELECT count(*)::int AS n FROM operation_items WHERE executed_seq IS NOT NULL`,
  );
  const items = (executed.rows[0] as { n: number }).n;
  const top = await sql(
    databaseUrl,
    `SELECT calls, total_exec_time AS ms, shared_blks_hit + shared_blks_read AS blks, wal_records AS wal,
       wal_bytes AS "walBytes", left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
     FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
     ORDER BY total_exec_time DESC LIMIT $1`,
    [TOP],
  );
  const perItem = (v: string | number, digits: number) => (Number(v) / items).toFixed(digits);
  const rows = top.rows as { calls: string; ms: number; blks: string; wal: string; walBytes: string; query: string }[];
  const statements = rows.map((r) => ({
    'µs per item': perItem(r.ms * 1000, 1),
    calls: Number(r.calls),
    'ms per call': (r.ms / Number(r.calls)).toFixed(2),
    'buffers per item': perItem(r.blks, 1),
    'WAL records per item': perItem(r.wal, 2),
    'WAL bytes per item': perItem(r.walBytes, 0),
    statement: r.query,
  }));
  return {
    section,
    items,
    waves,
    statements,
  };
}
