// A DATABASE_URL whose port accepts connections and never answers (another service's port) stops
// the start naming it, instead of hanging `npm start` in silence until it is killed (a trial).
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.ts';
import { databaseAnswers, databaseProblem, migrate } from '../../src/db/migrate.ts';

let silent: net.Server;
let url: string;
const sockets = new Set<net.Socket>();
beforeAll(async () => {
  // Accepts, reads, never answers: as a Redis does to PostgreSQL's startup message.
  silent = net.createServer((s) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  url = `postgres://blastgate:s3cret@127.0.0.1:${(silent.address() as net.AddressInfo).port}/blastgate`;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => silent.close(r));
});

describe('the start-up connection to PostgreSQL', () => {
  it('gives up on a server that never answers, and names DATABASE_URL without its password', async () => {
    const err = await migrate(url, undefined, 300).catch((e: unknown) => e);
    const problem = databaseProblem(err, url);
    expect(problem).toBeInstanceOf(ConfigError);
    expect(problem!.message).toMatch(
      /DATABASE_URL \(postgres:\/\/blastgate@127\.0\.0\.1:\d+\/blastgate\) did not answer as PostgreSQL within 10 s/,
    );
    expect(problem!.message).not.toContain('s3cret');
  });

  it('refuses a URL that names no database before connecting (`npm run db:migrate` filled `postgres`: a trial)', async () => {
    const noName = url.replace(/\/blastgate$/, '');
    const err = await migrate(noName, undefined, 300).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^DATABASE_URL names no database/)]);
    // Refused before any connection: the silent server was never reached by it.
    expect((err as Error).message).not.toContain('did not answer');
  });

  it("a worker's first look gives up the same way", async () => {
    const err = await databaseAnswers(url, 300).catch((e: unknown) => e);
    expect(databaseProblem(err, url)?.message).toContain('did not answer as PostgreSQL');
  });
});
