// `npm run db:migrate`: applies committed migrations to DATABASE_URL.
import { ConfigError } from '../src/config.ts';
import { migrate } from '../src/db/migrate.ts';

const url = process.env.DATABASE_URL;
if (!url) {
  console.error('DATABASE_URL is required (e.g. postgres://user:pass@host:5432/blastgate)');
  process.exit(2);
}
try {
  const r = await migrate(url);
  console.log(
    `migrations: ${r.applied.length} applied${r.applied.length ? ` (${r.applied.join(', ')})` : ''}, ${r.alreadyApplied} already in place`,
  );
} catch (err) {
  console.error((err as Error).message);
  // A URL that cannot be right (no database named) is a usage error, as at the server's start.
  process.exit(err instanceof ConfigError ? 2 : 1);
}
