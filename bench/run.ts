// `npm run bench`: every figure the issues ask for, printed as tables. Bounded: fixed sizes,
// everything on 127.0.0.1, services torn down at the end. `npm run bench -- <name>` runs one.
import pg from 'pg';
import { buildApp } from '../src/app.ts';
import { migrate } from '../src/db/migrate.ts';
import { benchControl } from './control.ts';
import { benchExecution } from './execution.ts';
import { benchPurge } from './purge.ts';
import { benchPlans } from './plan.ts';
import { benchRegistryImport } from './registry-import.ts';
import { benchRestore } from './restore.ts';
import { benchScale } from './scale.ts';
import { benchStatements } from './statements.ts';
import { BENCH_SNAPSHOT_KEY, benchServices, table } from './support.ts';

const only = process.argv[2];
const services = await benchServices();

/** A fresh, migrated database on the bench server, so benchmarks do not see each other's data. */
async function freshDatabase(name: string) {
  const root = services.databaseUrl.replace(/\/[^/]+$/, '');
  const c = new pg.Client({ connectionString: `${root}/postgres` });
  await c.connect();
  await c.query(`CREATE DATABASE ${name}`);
  await c.end();
  await migrate(`${root}/${name}`);
  return `${root}/${name}`;
}

try {
  if (!only || only === 'registry') {
    const databaseUrl = await freshDatabase('bench_registry');
    const app = await buildApp({
      config: {
        databaseUrl,
        redisUrl: services.redisUrl,
        logLevel: 'warn',
        queuePrefix: 'bench-registry',
        snapshotKey: BENCH_SNAPSHOT_KEY,
      },
      logger: false,
    });
    try {
      const token = 'bg_bench_admin_token_00000000000000';
      await app.authService.ensureBootstrap(token);
      const rows = [];
      for (const run of ['fresh import', 're-import (identical)']) {
        const r = await benchRegistryImport({ app, auth: `Bearer ${token}`, rows: 1_000_000 });
        rows.push({
          run,
          rows: r.rows,
          seconds: r.seconds.toFixed(2),
          'rows/s': Math.round(r.rowsPerSec).toLocaleString('en'),
          inserted: r.inserted,
          updated: r.updated,
          unchanged: r.unchanged,
        });
      }
      table('Registry import (1,000,000 resources, one streamed NDJSON request)', rows);
    } finally {
      await app.close();
    }
  }
  if (!only || only === 'plan')
    table(
      'Plan throughput (request → plan committed; API from dist/, its own process)',
      await benchPlans({ ...services, databaseUrl: await freshDatabase('bench_plan') }),
    );
  if (!only || only === 'execution')
    table('Execution', await benchExecution({ ...services, databaseUrl: await freshDatabase('bench_exec') }));
  // Sections of execution alone: waves (issue 10 item 3), halt overshoot, and efficiency (item 4).
  if (only === 'waves')
    table(
      'Items/s through waves',
      await benchExecution({ ...services, databaseUrl: await freshDatabase('bench_waves') }, ['waves']),
    );
  if (only === 'halt')
    table(
      'Halt overshoot and latency',
      await benchExecution({ ...services, databaseUrl: await freshDatabase('bench_halt') }, ['halt']),
    );
  // Not in the full run: it restarts the bench's PostgreSQL with pg_stat_statements loaded.
  if (only === 'statements') {
    const r = await benchStatements(services, freshDatabase);
    table(`The ${r.section} runs, with pg_stat_statements loaded`, r.waves);
    table(
      `PostgreSQL statements of those runs by total execution time (waits included), per item executed (${r.items.toLocaleString('en')})`,
      r.statements,
    );
  }
  if (only === 'efficiency')
    table(
      'Efficiency: Blastgate ÷ plain loop, same HTTP downstream',
      await benchExecution({ ...services, databaseUrl: await freshDatabase('bench_eff') }, ['efficiency']),
    );
  if (!only || only === 'restore')
    table(
      'Mass restore: 883 tenants × 20 items deleted by one operation, one restore (gate time: POST /v1/restores → completed)',
      await benchRestore({ ...services, databaseUrl: await freshDatabase('bench_restore') }),
    );
  if (!only || only === 'purge')
    table('Purge', await benchPurge({ ...services, databaseUrl: await freshDatabase('bench_purge') }));
  if (!only || only === 'control')
    table(
      'Control under load: GET and pause while one large operation runs (registry adapter, bake 0)',
      await benchControl({ ...services, databaseUrl: await freshDatabase('bench_control') }),
    );
  if (!only || only === 'scale')
    table(
      'Scale curve: plan IDs/s and items/s through waves by size',
      await benchScale({ ...services, databaseUrl: await freshDatabase('bench_scale') }),
    );
} finally {
  services.dispose();
}
