// outage-log.ts: a failure that repeats while a dependency is away is logged once when it begins
// and once when it ends; errors that are not a lost connection are not taken for one. The same
// rule makes the API's 503 DEPENDENCY_UNAVAILABLE (plugins/db.ts isUnreachable).
import { describe, expect, it } from 'vitest';
import { DEPENDENCY, dependencyOf, isConnectionError, outageLog } from '../../src/lib/outage-log.ts';

const capture = () => {
  const said: { level: string; obj: Record<string, unknown>; msg: string }[] = [];
  return {
    said,
    logger: {
      warn: (obj: Record<string, unknown>, msg: string) => said.push({ level: 'warn', obj, msg }),
      info: (obj: Record<string, unknown>, msg: string) => said.push({ level: 'info', obj, msg }),
    },
  };
};

describe('outageLog', () => {
  it('logs the first failure (code and message, no stack), counts the repeats, and the end once', () => {
    const { said, logger } = capture();
    let t = 1_000;
    const log = outageLog(logger as never, 'redis', () => t);
    log.ok(); // up from the start: nothing to say
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
    for (let i = 0; i < 5; i++) log.failed(err);
    t = 7_500;
    log.ok();
    log.ok();
    expect(said).toEqual([
      {
        level: 'warn',
        obj: { code: 'ECONNREFUSED', error: 'connect ECONNREFUSED 127.0.0.1:6379' },
        msg: 'redis: failing (further failures are not logged until it answers again)',
      },
      { level: 'info', obj: { downMs: 6_500, repeats: 4 }, msg: 'redis: answers again' },
    ]);
    log.failed(err);
    expect(said).toHaveLength(3);
  });
});

describe('isConnectionError', () => {
  const rows: [string, unknown, boolean][] = [
    ['refused (code)', Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), true],
    ['ioredis closed connection', new Error('Connection is closed.'), true],
    ['ioredis offline queue off', new Error("Stream isn't writeable and enableOfflineQueue options is false"), true],
    ['PostgreSQL shutting down', Object.assign(new Error('terminating connection'), { code: '57P01' }), true],
    [
      'every address refused',
      Object.assign(new AggregateError([Object.assign(new Error('a'), { code: 'ECONNREFUSED' })]), {}),
      true,
    ],
    ['pg: connection terminated', new Error('Connection terminated unexpectedly'), true],
    ['pg: SQLSTATE class 08', Object.assign(new Error('connection failure'), { code: '08006' }), true],
    ['ioredis: command timed out', new Error('Command timed out'), true],
    [
      'wrapped in a cause',
      new Error('reading the plan', { cause: Object.assign(new Error('x'), { code: 'ECONNRESET' }) }),
      true,
    ],
    ['a bug', new TypeError("Cannot read properties of undefined (reading 'id')"), false],
    ['a missing lock', new Error('Missing lock for job 12. moveToFinished'), false],
    ['a SQL error', Object.assign(new Error('syntax error'), { code: '42601' }), false],
    ['nothing', undefined, false],
  ];
  it.each(rows)('%s', (_n, err, expected) => expect(isConnectionError(err)).toBe(expected));
});

// The API's 503 names the dependency when the error tells which (plugins/errors.ts).
describe('dependencyOf', () => {
  const marked = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
  (marked as unknown as Record<symbol, string>)[DEPENDENCY] = 'postgres';
  const rows: [string, unknown, string | null][] = [
    ['refused, marked by the PostgreSQL client', marked, 'postgres'],
    ['refused, unmarked (either could have refused)', Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), null],
    ['PostgreSQL shutting down', Object.assign(new Error('terminating connection'), { code: '57P01' }), 'postgres'],
    ['pg: connection terminated', new Error('Connection terminated unexpectedly'), 'postgres'],
    [
      'pg: client not queryable',
      new Error('Client has encountered a connection error and is not queryable'),
      'postgres',
    ],
    ['ioredis closed connection', new Error('Connection is closed.'), 'redis'],
    ['ioredis gave up', new Error('Reached the max retries per request limit (which is 3).'), 'redis'],
    ['ioredis: command timed out', new Error('Command timed out'), 'redis'],
    ['wrapped in a cause', new Error('reading the plan', { cause: marked }), 'postgres'],
    ['a bug', new TypeError('x'), null],
  ];
  it.each(rows)('%s', (_n, err, expected) => expect(dependencyOf(err)).toBe(expected));
});
