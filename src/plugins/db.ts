// PostgreSQL: one pg pool shared by Prisma (ordinary reads/writes) and by the set-based hot paths
// (COPY, unnest, = ANY($1)) that Prisma's query builder would do row by row.
import fp from 'fastify-plugin';
import pg from 'pg';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../generated/prisma/client.ts';

export interface Db {
  pool: pg.Pool;
  prisma: PrismaClient;
}

declare module 'fastify' {
  interface FastifyInstance {
    db: Db;
  }
}

// Postgres returns bigint/numeric as strings by default; counts we produce fit in a JS number.
pg.types.setTypeParser(20, (v) => Number(v));

export function createDb(connectionString: string, max = 20): Db {
  const pool = new pg.Pool({ connectionString, max, application_name: 'blastgate' });
  // A client that loses its connection must not crash the process: the pool handles idle clients,
  // and this listener covers checked-out ones (pg emits 'error' on them too, e.g. when PostgreSQL
  // restarts mid-transaction). The failed query rejects, and the pool discards the broken client.
  pool.on('error', () => undefined);
  pool.on('connect', (client) => client.on('error', () => undefined));
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool) });
  return { pool, prisma };
}

export async function closeDb(db: Db) {
  await db.prisma.$disconnect();
  await db.pool.end();
}

export default fp<{ url: string; poolSize?: number }>(
  async (app, opts) => {
    const db = createDb(opts.url, opts.poolSize);
    app.decorate('db', db);
    app.addHook('onClose', async () => closeDb(db));
  },
  { name: 'db' },
);
