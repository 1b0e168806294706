// `npm run bench -- statements`: where PostgreSQL's time goes in a waves run. The bench's own
// PostgreSQL is restarted with pg_stat_statements loaded, the `waves` section runs (1 process, then
// 2 worker processes; BENCH_STATEMENTS_OF=efficiency runs that section instead: the HTTP adapter's
// path), and the statements are listed by total execution time with their cost per item executed.
// Execution time includes waits (locks, and CPU the 2 cores gave to others), so the per-item
// figures add up to more than "PostgreSQL CPU per item": read them as shares, not as CPU.
import { join } from 'node:path';
import pg from 'pg';
import { asPostgres } from '../src/embedded/local-postgres.ts';
import { ensureBinaries } from '../src/embedded/local-services.ts';
import { benchExecution } from './execution.ts';

const TOP = 15;

export async function benchStatements(
  services: { databaseUrl: string; redisUrl: string; dir: string },
  freshDatabase: (name: string) => Promise<string>,
) {
  const admin = async <T>(url: string, run: (c: pg.Client) => Promise<T>) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return await run(c);
    } finally {
      await c.end();
    }
  };
  await admin(services.databaseUrl, (c) => c.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`));
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
  await admin(databaseUrl, async (c) => {
    await c.query('CREATE EXTENSION pg_stat_statements');
    await c.query('SELECT pg_stat_statements_reset()');
  });
  const section = process.env.BENCH_STATEMENTS_OF === 'efficiency' ? 'efficiency' : 'waves';
  const waves = await benchExecution({ ...services, databaseUrl }, [section]);
  // Every item the runs executed (the efficiency runs' warm-ups included).
  const items = await admin(databaseUrl, async (c) =>
    Number((await c.query(`SELECT count(*) AS n FROM operation_items WHERE executed_seq IS NOT NULL`)).rows[0].n),
  );
  const top = await admin(databaseUrl, (c) =>
    c.query<{ calls: string; ms: number; blks: string; wal: string; walBytes: string; query: string }>(
      `SELECT calls, total_exec_time AS ms, shared_blks_hit + shared_blks_read AS blks, wal_records AS wal,
         wal_bytes AS "walBytes",
         left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
       FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
       ORDER BY total_exec_time DESC LIMIT $1`,
      [TOP],
    ),
  );
  const statements = top.rows.map((r) => ({
    'µs per item': (r.ms * 1000) / items,
    calls: Number(r.calls),
    'ms per call': r.ms / Number(r.calls),
    'buffers per item': Number(r.blks) / items,
    'WAL records per item': Number(r.wal) / items,
    'WAL bytes per item': Number(r.walBytes) / items,
    statement: r.query,
  }));
  return {
    section,
    items,
    waves,
    statements: statements.map((s) => ({
      ...s,
      'µs per item': s['µs per item'].toFixed(1),
      'ms per call': s['ms per call'].toFixed(2),
      'buffers per item': s['buffers per item'].toFixed(1),
      'WAL records per item': s['WAL records per item'].toFixed(2),
      'WAL bytes per item': s['WAL bytes per item'].toFixed(0),
    })),
  };
}
