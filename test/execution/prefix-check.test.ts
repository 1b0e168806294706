// An API and its workers share one queue prefix. A worker started with a mistyped
// BLASTGATE_QUEUE_PREFIX ran the API's operations from the shared database through queues of its
// own, with no word at start, while the API's view said no worker was connected (a trial). A start
// whose prefix differs from the one the database's last start used now warns, naming both.
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, inject, it } from 'vitest';
import { startWorkers } from '../../src/worker-runtime.ts';
import { createTestDatabase } from '../support/db.ts';
import { TEST_SNAPSHOT_KEY_BYTES } from '../support/keys.ts';
import { testDownstream } from '../support/secrets.ts';

/** A logger whose warnings are kept. */
function capture() {
  const warnings: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const line = JSON.parse(chunk.toString()) as { level: number; msg: string };
      if (line.level === 40) warnings.push(line.msg);
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, sink), warnings };
}

const start = (databaseUrl: string, queuePrefix: string, logger: pino.Logger) =>
  startWorkers({
    databaseUrl,
    redisUrl: inject('redisUrl'),
    queuePrefix,
    concurrency: 1,
    downstream: testDownstream(),
    snapshotKey: TEST_SNAPSHOT_KEY_BYTES,
    logger,
  });

describe('the queue prefix of a database', () => {
  it('a start with another prefix than one started within the day says so, naming both, and takes no side', async () => {
    const databaseUrl = await createTestDatabase();
    const prefix = `bgt${randomBytes(4).toString('hex')}`;
    const typo = prefix.slice(0, -1);
    const first = capture();
    await (await start(databaseUrl, prefix, first.logger)).close();
    const same = capture();
    await (await start(databaseUrl, prefix, same.logger)).close();
    const other = capture();
    await (await start(databaseUrl, typo, other.logger)).close();
    // The right prefix again after the typo: told of the typo, never told to take it (a trial).
    const back = capture();
    await (await start(databaseUrl, prefix, back.logger)).close();
    const said = (w: string[]) => w.filter((m) => m.startsWith('BLASTGATE_QUEUE_PREFIX is'));
    expect(said(first.warnings)).toEqual([]);
    expect(said(same.warnings)).toEqual([]);
    expect(said(other.warnings)).toEqual([
      expect.stringMatching(
        new RegExp(
          `^BLASTGATE_QUEUE_PREFIX is "${typo}", but processes of this database started with another prefix within the last day: "${prefix}" \\(worker, last at `,
        ),
      ),
    ]);
    expect(said(back.warnings)).toEqual([expect.stringContaining(`is "${prefix}", but processes`)]);
    expect(said(back.warnings)[0]).toContain(`"${typo}" (worker, last at `);
    expect(said(back.warnings)[0]).toContain('check which one is meant');
    expect(said(back.warnings)[0]).not.toContain(`BLASTGATE_QUEUE_PREFIX=${typo}`);
  }, 60_000);
});
