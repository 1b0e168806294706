import { defineConfig } from 'prisma/config';

// Prisma 7 keeps the connection string out of schema.prisma. `process.env` (not `env()`) so that
// `prisma generate` in postinstall works with DATABASE_URL unset.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? '' },
});
