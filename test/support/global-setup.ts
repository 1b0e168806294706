// Starts a real PostgreSQL and Redis for this test run (in a temp dir, on free ports) and builds
// a migrated template database that each test file clones (CREATE DATABASE … TEMPLATE).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startLocalServices } from '../../src/embedded/local-services.ts';
import { migrate } from '../../src/db/migrate.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgRootUrl: string;
    redisUrl: string;
    templateDb: string;
  }
}

export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'blastgate-test-'));
  const services = await startLocalServices({ dir, database: 't_migrated', log: () => undefined });
  await migrate(services.databaseUrl);
  const root = services.databaseUrl.replace(/\/t_migrated$/, '');
  // A template may not have open connections when it is cloned.
  const admin = new pg.Client({ connectionString: `${root}/postgres` });
  await admin.connect();
  await admin.query(
    `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 't_migrated' AND pid <> pg_backend_pid()`,
  );
  await admin.end();
  project.provide('pgRootUrl', root);
  project.provide('redisUrl', services.redisUrl);
  project.provide('templateDb', 't_migrated');
  return () => {
    services.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}
