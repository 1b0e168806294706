// A misspelled setting is named at start with the closest real one; every name the source reads is known.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  KNOWN_PREFIXES,
  KNOWN_SETTINGS,
  misspeltConnections,
  misspeltShortSettings,
  unknownSettings,
} from '../../src/lib/env-names.ts';
import { localDatabaseBesideSharedRedis } from '../../src/embedded/local-services.ts';

describe('unknownSettings', () => {
  it('names a misspelled setting and the one it most likely meant, and nothing else', () => {
    expect(
      unknownSettings({
        BLASTGATE_WORKER_CONCURENCY: '8',
        BLASTGATE_WORKER_CONCURRENCY: '4',
        BLASTGATE_SECRET_APPS_PROD: 'x',
        BLASTGATE_NO_SUCH_THING_AT_ALL: '1',
        PATH: '/usr/bin',
      }),
    ).toEqual([
      'warning: BLASTGATE_NO_SUCH_THING_AT_ALL is not a Blastgate setting and is ignored',
      'warning: BLASTGATE_WORKER_CONCURENCY is not a Blastgate setting and is ignored (did you mean BLASTGATE_WORKER_CONCURRENCY?)',
    ]);
  });

  it('names a variable a typo or two from DATABASE_URL or REDIS_URL, and no other', () => {
    const env = {
      DATABSE_URL: 'x',
      database_url: 'x',
      REDIS_ULR: 'x',
      DATABASE_URL: 'x',
      REDIS_PORT: '6379',
      PGDATABASE: 'x',
      HOME: '/root',
    };
    expect(misspeltConnections(env)).toEqual([
      ['DATABSE_URL', 'DATABASE_URL'],
      ['REDIS_ULR', 'REDIS_URL'],
      ['database_url', 'DATABASE_URL'],
    ]);
    expect(unknownSettings(env)).toContain('warning: REDIS_ULR is ignored (did you mean REDIS_URL?)');
  });

  it('names a one-letter typo of PORT, HOST or LOG_LEVEL (a trial set PORTT and got port 3000 without a word)', () => {
    const env = {
      PORTT: '8080',
      HSOT: '0.0.0.0',
      LOG_LEVL: 'debug',
      PORT: '1',
      HOME: '/root',
      POSTGRES: 'x',
      SHLVL: '1',
    };
    expect(misspeltShortSettings(env)).toEqual([
      ['LOG_LEVL', 'LOG_LEVEL'],
      ['PORTT', 'PORT'],
    ]);
    expect(unknownSettings(env)).toContain('warning: PORTT is ignored (did you mean PORT?)');
  });

  it.each([
    ['REDIS_URL alone', { redisUrl: 'redis://r' }, {}, 'REDIS_URL is set but DATABASE_URL is not: '],
    ['REDIS_URL alone, its own queues', { redisUrl: 'redis://r' }, { BLASTGATE_QUEUE_PREFIX: 'mine' }, undefined],
    ['both URLs', { redisUrl: 'redis://r', databaseUrl: 'postgres://d' }, {}, undefined],
    ['neither (everything local)', {}, {}, undefined],
    ['DATABASE_URL alone (a private local Redis)', { databaseUrl: 'postgres://d' }, {}, undefined],
  ])('a local PostgreSQL beside a shared Redis: %s', (_name, urls, env, refused) => {
    const problem = localDatabaseBesideSharedRedis(urls, env, []);
    if (refused === undefined) expect(problem).toBeUndefined();
    else expect(problem?.message).toContain(refused);
  });

  it('knows every BLASTGATE_ name the source reads (a new setting must be added to the list)', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const f of readdirSync(d)) {
        const p = join(d, f);
        if (statSync(p).isDirectory()) walk(p);
        // env-names.ts itself quotes a misspelled name as its example.
        else if (p.endsWith('.ts') && !p.endsWith('env-names.ts')) files.push(p);
      }
    };
    walk(join(import.meta.dirname, '../../src'));
    const read = new Set<string>();
    for (const f of files)
      for (const m of readFileSync(f, 'utf8').matchAll(/\bBLASTGATE_[A-Z0-9_]*[A-Z0-9]\b/g)) read.add(m[0]);
    const known = new Set<string>(KNOWN_SETTINGS);
    const missing = [...read].filter((n) => !known.has(n) && !KNOWN_PREFIXES.some((p) => n.startsWith(p)));
    expect(missing).toEqual([]);
  });
});
