// Zero-config start and the snapshot master key: generated once into the data folder (owner-only),
// read again by the next start so the snapshots already taken stay readable, and a start with
// another key against the same database is refused before it could write unreadable snapshots.
import { statSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { parseMasterKey } from '../../src/modules/snapshots/crypto.ts';
import { cleanUp, startServer, spawnServer, tempDataDir, type ServerChild } from './helpers.ts';

let dir: string;
let server: ServerChild | undefined;
afterEach(async () => {
  await cleanUp(dir, server);
  server = undefined;
});

const stop = async (s: ServerChild) => {
  s.signal('SIGINT');
  expect(await s.exited).toBe(0);
};

it(
  'generates the key once (mode 0600), reuses it on restart, and refuses another key',
  { timeout: 240_000 },
  async () => {
    dir = tempDataDir();
    const file = join(dir, 'snapshot-key');
    server = await startServer(dir);
    const key = readFileSync(file, 'utf8');
    expect(parseMasterKey(key)?.length).toBe(32);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    await stop(server);

    // Another key (an operator's typo, a regenerated secret) for the same database: exit 2, said why.
    server = await spawnServer(dir, { BLASTGATE_SNAPSHOT_KEY: Buffer.alloc(32, 7).toString('base64') });
    expect(await server.exited).toBe(2);
    expect(server.output()).toContain('BLASTGATE_SNAPSHOT_KEY is not the key this database was written with');
    expect(server.output()).toMatch(/stopped the local Redis \(pid \d+\) and PostgreSQL/);

    // The next zero-config start reads the key it generated: the same file, accepted by the database.
    server = await startServer(dir);
    expect(readFileSync(file, 'utf8')).toBe(key);
    await stop(server);

    // A damaged key file is never replaced by a new key: the start stops and says what to do.
    writeFileSync(file, 'garbage\n');
    server = await spawnServer(dir);
    expect(await server.exited).toBe(2);
    expect(server.output()).toContain(`${file} does not hold a valid snapshot key`);
    expect(readFileSync(file, 'utf8')).toBe('garbage\n');
  },
);
